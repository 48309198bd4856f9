"""The one set of schemas: prepared transactions, quarantine records, Kafka messages, scored rows, Cassandra tables.

Every app selects these columns at its boundaries, so a change of contract is a
change here and nowhere else.
"""

from __future__ import annotations

from pyspark.sql import types as T

#: Columns of the cleaned, typed data set that every later stage reads.
PREPARED_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType(), False),
        T.StructField("step", T.IntegerType(), False),
        T.StructField("customer", T.StringType(), False),
        T.StructField("age", T.StringType(), False),
        T.StructField("gender", T.StringType(), False),
        T.StructField("zipcode_ori", T.StringType(), True),
        T.StructField("merchant", T.StringType(), False),
        T.StructField("zip_merchant", T.StringType(), True),
        T.StructField("category", T.StringType(), False),
        T.StructField("amount", T.DoubleType(), False),
        T.StructField("fraud", T.IntegerType(), True),
        T.StructField("event_time", T.TimestampType(), False),
        T.StructField("event_month", T.StringType(), False),
    ]
)
PREPARED_COLUMNS: list[str] = PREPARED_SCHEMA.fieldNames()

#: Prepared data is partitioned by month so one month reads cheaply.
PARTITION_COLUMN = "event_month"

#: A rejected input row, kept whole with why it was rejected.
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("source_file", T.StringType(), True),
        T.StructField("line_number", T.LongType(), True),
        T.StructField("raw_line", T.StringType(), True),
        T.StructField("reason", T.StringType(), False),
    ]
)
QUARANTINE_COLUMNS: list[str] = QUARANTINE_SCHEMA.fieldNames()

#: The JSON value of a message on the transactions topic (what stream_csv_to_kafka writes).
TRANSACTION_MESSAGE_SCHEMA = T.StructType(
    [f for f in PREPARED_SCHEMA.fields if f.name != "event_month"]
)

# --------------------------------------------------------------------------- scored rows

#: The output of :func:`fraudlab.scoring.score_claims`: the schema contract of scored claims.
SCORED_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType()),
        T.StructField("step", T.IntegerType()),
        T.StructField("customer", T.StringType()),
        T.StructField("age", T.StringType()),
        T.StructField("gender", T.StringType()),
        T.StructField("merchant", T.StringType()),
        T.StructField("category", T.StringType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("fraud", T.IntegerType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("event_month", T.StringType()),
        T.StructField("fraud_probability", T.DoubleType()),
        T.StructField("amount_zscore", T.DoubleType()),
        T.StructField("amount_over_customer_mean", T.DoubleType()),
        T.StructField("amount_outlier", T.BooleanType()),
        T.StructField("duplicate_claim", T.BooleanType()),
        T.StructField("duplicate_of", T.StringType()),
        T.StructField("customer_amount_spike", T.BooleanType()),
        T.StructField("fraud_score", T.DoubleType()),
        T.StructField("risk_tier", T.StringType()),
        T.StructField("flagged", T.BooleanType()),
        T.StructField("reasons", T.ArrayType(T.StringType())),
        T.StructField("model_version", T.StringType()),
    ]
)
SCORED_COLUMNS: list[str] = SCORED_SCHEMA.fieldNames()

#: Scored claims as CSV holds them: ``reasons`` joined by :data:`fraudlab.scoring.REASON_SEPARATOR`.
FLAT_SCORED_SCHEMA = T.StructType(
    [T.StructField(f.name, T.StringType()) if f.name == "reasons" else f for f in SCORED_SCHEMA.fields]
)

# --------------------------------------------------------------------------- the stream: Kafka and Cassandra

#: Kafka coordinates every parsed row keeps (``kafka_timestamp`` measures end-to-end latency).
KAFKA_LINEAGE: list[str] = ["kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp"]
#: What :func:`fraudlab.streaming.codec.split_messages` returns as parsed rows.
PARSED_COLUMNS: list[str] = [*PREPARED_COLUMNS, *KAFKA_LINEAGE]

#: A rejected message: where it was, its original bytes and why it was rejected.
DEAD_LETTER_SCHEMA = T.StructType(
    [
        T.StructField("source_topic", T.StringType()),
        T.StructField("source_partition", T.IntegerType()),
        T.StructField("source_offset", T.LongType()),
        T.StructField("source_timestamp", T.TimestampType()),
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("reason", T.StringType()),
    ]
)
DEAD_LETTER_COLUMNS: list[str] = DEAD_LETTER_SCHEMA.fieldNames()

#: Scored rows of the stream: the batch scorer's contract plus the Kafka timestamp.
STREAM_SCORED_COLUMNS: list[str] = [*SCORED_COLUMNS, "kafka_timestamp"]

#: Fields of an alert message (value of the alerts topic, keyed by transaction_id).
ALERT_FIELDS: list[str] = [
    "transaction_id", "event_time", "step", "customer", "age", "gender", "merchant", "category", "amount",
    "fraud_probability", "fraud_score", "risk_tier", "reasons", "duplicate_of", "model_version",
]  # fmt: skip

# Cassandra tables (compose/cassandra/schema.cql), column order of the prepared INSERTs.
SCORED_TABLE = "scored_transactions"
ALERTS_TABLE = "alerts_by_day"
HISTORY_TABLE = "customer_history"
CHECKPOINTS_TABLE = "stream_checkpoints"
DIGESTS_TABLE = "transaction_digests"
SCORED_TABLE_COLUMNS: list[str] = [
    "customer", "event_time", "transaction_id", "step", "age", "gender", "merchant", "category", "amount",
    "fraud", "fraud_probability", "fraud_score", "risk_tier", "reasons", "model_version", "scored_at",
]  # fmt: skip
ALERT_TABLE_COLUMNS: list[str] = ["alert_date", *SCORED_TABLE_COLUMNS]
HISTORY_TABLE_COLUMNS: list[str] = ["customer", "step", "transaction_id", "merchant", "amount"]
#: :func:`fraudlab.streaming.alerts.cassandra_rows` columns: every table's columns once, the alert flag, the Kafka
#: time, and the alert's message (its JSON for the alerts topic, null for a row that is no alert).
CASSANDRA_ROW_COLUMNS: list[str] = [*ALERT_TABLE_COLUMNS, "is_alert", "kafka_timestamp_ms", "alert_message"]

#: What the Cassandra history lookup returns for :func:`fraudlab.streaming.history.add_stream_history`: stored rows of
#: the batch's customers (``row_count`` 1) and one summary row per customer (null id,
#: ``row_count``/``amount_total`` = count/sum of the older rows, on the step before the others).
STORED_HISTORY_SCHEMA = T.StructType(
    [
        T.StructField("customer", T.StringType(), False),
        T.StructField("step", T.IntegerType(), False),
        T.StructField("transaction_id", T.StringType(), True),
        T.StructField("merchant", T.StringType(), True),
        T.StructField("amount", T.DoubleType(), True),
        T.StructField("row_count", T.LongType(), False),
        T.StructField("amount_total", T.DoubleType(), True),
    ]
)
