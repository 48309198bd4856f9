"""The stream's Kafka messages: transactions in (validated like a CSV row), dead letters out.

* :func:`to_kafka_messages`: prepared rows -> ``key`` (``transaction_id``), ``value`` (the JSON of
  :data:`fraudlab.schemas.TRANSACTION_MESSAGE_SCHEMA`), what ``stream_csv_to_kafka.py`` sends;
* :func:`validate_messages` and :func:`split_messages` (or both at once, :func:`parse_messages`):
  Kafka rows judged by the rules of :func:`fraudlab.data.parsing.validate`, a rejected message
  becoming a dead letter with its reason and original bytes; :func:`dead_letter_messages` encodes them.

Pure DataFrame functions, batch or streaming alike: the tests run them on static DataFrames of
Kafka-shaped rows (``key``, ``value``, ``topic``, ``partition``, ``offset``, ``timestamp``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fraudlab import schemas
from fraudlab.config import DEFAULT_START_DATE
from fraudlab.data import parsing

#: Columns of a Kafka source row (Spark's Kafka source has these and more).
KAFKA_COLUMNS: list[str] = ["key", "value", "topic", "partition", "offset", "timestamp"]

#: Fields of a transactions message, in schema order.
MESSAGE_FIELDS: list[str] = schemas.TRANSACTION_MESSAGE_SCHEMA.fieldNames()

#: Timestamps in messages: ISO 8601 with milliseconds and an explicit offset (``Z`` in UTC).
MESSAGE_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
JSON_OPTIONS = {"timestampFormat": MESSAGE_TIMESTAMP_FORMAT}

#: Message field -> the BankSim field name :func:`fraudlab.data.parsing.validate` judges it under.
#: ``event_time`` goes in as the optional ``date`` column, so the message's own time is kept.
_VALIDATED_AS: dict[str, str] = {
    "step": "step",
    "customer": "customer",
    "age": "age",
    "gender": "gender",
    "zipcode_ori": "zipcodeOri",
    "merchant": "merchant",
    "zip_merchant": "zipMerchant",
    "category": "category",
    "amount": "amount",
    "fraud": "fraud",
    "event_time": "date",
}
#: validate() names a field by its BankSim name; a dead letter names it as the message does.
_REASON_WORDING: list[tuple[str, str]] = [
    (r"\bzipcodeOri\b", "zipcode_ori"),
    (r"\bzipMerchant\b", "zip_merchant"),
    (r"\bdate is not a timestamp\b", "event_time is not a timestamp"),
]


# --------------------------------------------------------------------------- messages out

def to_kafka_messages(prepared: DataFrame) -> DataFrame:
    """Prepared rows -> ``key`` (transaction_id), ``value`` (JSON of the message schema).

    Other columns of ``prepared`` (e.g. a pacing chunk) are kept after the two.
    """
    value = F.to_json(F.struct(*[F.col(name) for name in MESSAGE_FIELDS]), JSON_OPTIONS)
    extra = [c for c in prepared.columns if c not in schemas.PREPARED_COLUMNS]
    return prepared.select(F.col("transaction_id").alias("key"), value.alias("value"), *extra)


# --------------------------------------------------------------------------- messages in

def _translate_reason(reason: Column) -> Column:
    for pattern, replacement in _REASON_WORDING:
        reason = F.regexp_replace(reason, pattern, replacement)
    return reason


def validate_messages(kafka_df: DataFrame, start_date: str = DEFAULT_START_DATE) -> DataFrame:
    """Judge every Kafka row by :func:`fraudlab.data.parsing.validate`'s rules; ``reason`` is null when valid.

    Every field is read from the JSON as text (``4.55`` -> ``"4.55"``) and goes
    through the same casts and checks as a CSV field. Before the rules, a row
    whose value is empty, is not a JSON object, or lacks fields (absent, null or
    blank) is rejected with that as its reason. Returns the prepared columns,
    the Kafka coordinates, the original ``key``/``value`` bytes and ``reason``;
    :func:`split_messages` separates the two outcomes.
    """
    raw = F.col("value").cast("string")
    as_text = T.StructType([T.StructField(name, T.StringType()) for name in MESSAGE_FIELDS])
    message = F.from_json(raw, as_text)
    is_empty = F.trim(F.coalesce(raw, F.lit(""))) == ""
    is_json_object = F.json_object_keys(raw).isNotNull()
    missing = F.array_compact(
        F.array(*[F.when(F.trim(F.coalesce(message[name], F.lit(""))) == "", F.lit(name)) for name in MESSAGE_FIELDS])
    )
    field_error = (
        F.when(is_empty, F.lit("empty message"))
        .when(~is_json_object, F.lit("not a JSON object"))
        .when(F.size(missing) > 0, F.concat(F.lit("missing field(s): "), F.array_join(missing, ", ")))
    )
    keep = ["_message_id", "_key", "_value", *schemas.KAFKA_LINEAGE]
    fields = kafka_df.select(
        F.col("topic").alias("source_file"),
        F.col("offset").cast("long").alias("line_number"),
        raw.alias("raw_line"),
        F.trim(message["transaction_id"]).alias("_message_id"),
        F.col("key").cast("binary").alias("_key"),
        F.col("value").cast("binary").alias("_value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").cast("long").alias("kafka_offset"),
        F.col("timestamp").cast("timestamp").alias("kafka_timestamp"),
        *[message[name].alias(banksim_name) for name, banksim_name in _VALIDATED_AS.items()],
        field_error.alias("field_error"),
    )
    validated = parsing.validate(fields, start_date, keep=keep)
    return validated.select(
        F.col("_message_id").alias("transaction_id"),
        *[c for c in schemas.PREPARED_COLUMNS if c != "transaction_id"],
        *schemas.KAFKA_LINEAGE,
        F.col("_key").alias("key"),
        F.col("_value").alias("value"),
        _translate_reason(F.col("reason")).alias("reason"),
    )


def split_messages(validated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(parsed, dead_letters)`` from :func:`validate_messages`.

    ``parsed`` has :data:`PARSED_COLUMNS`, ``dead_letters`` :data:`DEAD_LETTER_COLUMNS`.
    """
    parsed = validated.where(F.col("reason").isNull()).select(*schemas.PARSED_COLUMNS)
    dead = validated.where(F.col("reason").isNotNull()).select(
        F.col("kafka_topic").alias("source_topic"),
        F.col("kafka_partition").alias("source_partition"),
        F.col("kafka_offset").alias("source_offset"),
        F.col("kafka_timestamp").alias("source_timestamp"),
        "key",
        "value",
        "reason",
    )
    return parsed, dead


def parse_messages(kafka_df: DataFrame, start_date: str = DEFAULT_START_DATE) -> tuple[DataFrame, DataFrame]:
    """Kafka rows -> ``(parsed, dead_letters)``; see :func:`validate_messages` for the rules."""
    return split_messages(validate_messages(kafka_df, start_date))


def dead_letter_messages(dead_letters: DataFrame) -> DataFrame:
    """Dead letters -> ``key`` (the original key bytes), ``value`` (JSON).

    The JSON holds the reason, the source topic/partition/offset/timestamp, the
    original key and value as text, and the value as base64 (exact even when the
    bytes are not UTF-8).
    """
    value = F.to_json(
        F.struct(
            F.col("reason"),
            F.col("source_topic"),
            F.col("source_partition"),
            F.col("source_offset"),
            F.col("source_timestamp"),
            F.col("key").cast("string").alias("key"),
            F.col("value").cast("string").alias("value"),
            F.base64(F.col("value")).alias("value_base64"),
        ),
        {**JSON_OPTIONS, "ignoreNullFields": "false"},
    )
    return dead_letters.select(F.col("key"), value.alias("value"))
