"""The one set of schemas: prepared transactions, quarantine records, Kafka messages.

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
