"""The stream's logic: Kafka messages in and out, validation, history features, alerts, Cassandra rows.

Pure DataFrame functions, batch or streaming alike, so the tests run them on
static DataFrames built from Kafka-shaped rows (``key``, ``value``, ``topic``,
``partition``, ``offset``, ``timestamp``). The apps only wire them up:

* ``stream_csv_to_kafka.py`` parses CSV with :mod:`fraudlab.data.parsing` and sends
  :func:`to_kafka_messages` (key ``transaction_id``, value the JSON of
  :data:`fraudlab.schemas.TRANSACTION_MESSAGE_SCHEMA`), paced by
  :class:`ReplayPace`;
* ``classify_stream.py`` runs, per micro-batch, :func:`validate_messages` and
  :func:`split_messages` (the same rules as :func:`fraudlab.data.parsing.validate`; a
  rejected message becomes a dead letter with its reason and original bytes),
  :func:`history_requests` -> Cassandra -> :func:`add_stream_history`,
  :func:`score_messages` (the batch scorer's model and rules), then
  :func:`cassandra_rows`, :func:`select_alerts` and :func:`dead_letter_messages`.

**Customer history in the stream.** Batch features look at a customer's rows on
strictly earlier steps (:mod:`fraudlab.features`). The stream cannot see the
future either, so its history is what it has already processed, kept in
Cassandra's ``customer_history`` table: one row per transaction, keyed
``((customer), step, transaction_id)``. For a micro-batch the sink reads, per
customer with ``s_min``/``s_max`` its earliest/latest step in the batch and
``W`` the duplicate-claim window: the count and sum of stored amounts on steps
``< s_min - W`` (one server-side aggregate) and the stored rows on steps
``s_min - W .. s_max`` (a few rows: what the duplicate rule needs).
:func:`add_stream_history` puts those rows next to the batch's own and runs the
very window of :func:`fraudlab.features.customer_history_window` over them, the
summary row weighing its count. After scoring, the batch's rows are upserted
into the table. Because history rows are keyed by ``transaction_id`` and stored
rows that are in the batch are ignored, replaying a batch (after a crash, a
restart from an older checkpoint, or the same transactions sent twice) gives the
same features and leaves the table as it was: nothing is counted twice. When
messages arrive in step order the stream's features and scores equal batch
scoring's. Out of order, steps still decide what is "earlier": a row counts
only the stored rows of its customer on smaller steps, so it never sees its
future; what it can miss is an earlier-step row that has not arrived yet when
its batch runs (batch scoring, reading the whole period, would count it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fraudlab import features, schemas, scoring
from fraudlab.train import pipeline as train_pipeline
from fraudlab.data import parsing
from fraudlab.config import DEFAULT_START_DATE, DetectionConfig

#: Columns of a Kafka source row (Spark's Kafka source has these and more).
KAFKA_COLUMNS: list[str] = ["key", "value", "topic", "partition", "offset", "timestamp"]

#: Fields of a transactions message, in schema order.
MESSAGE_FIELDS: list[str] = schemas.TRANSACTION_MESSAGE_SCHEMA.fieldNames()

#: Timestamps in messages: ISO 8601 with milliseconds and an explicit offset (``Z`` in UTC).
MESSAGE_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
_JSON_OPTIONS = {"timestampFormat": MESSAGE_TIMESTAMP_FORMAT}

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

#: One step of BankSim is one day of event time.
SECONDS_PER_STEP = 86_400.0


# --------------------------------------------------------------------------- messages out


def to_kafka_messages(prepared: DataFrame) -> DataFrame:
    """Prepared rows -> ``key`` (transaction_id), ``value`` (JSON of the message schema).

    Other columns of ``prepared`` (e.g. a pacing chunk) are kept after the two.
    """
    value = F.to_json(F.struct(*[F.col(name) for name in MESSAGE_FIELDS]), _JSON_OPTIONS)
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
        {**_JSON_OPTIONS, "ignoreNullFields": "false"},
    )
    return dead_letters.select(F.col("key"), value.alias("value"))


# --------------------------------------------------------------------------- customer history


def history_requests(parsed: DataFrame, window_steps: int) -> DataFrame:
    """Per customer of the batch: ``context_from_step`` (earliest step - ``window_steps``) and ``context_to_step``.

    Stored rows on steps ``< context_from_step`` are needed only as a count and a
    sum; those from ``context_from_step`` to ``context_to_step`` row by row.
    """
    if window_steps < 0:
        raise ValueError("window_steps must be >= 0")
    return parsed.groupBy("customer").agg(
        (F.min("step") - F.lit(int(window_steps))).cast("int").alias("context_from_step"),
        F.max("step").cast("int").alias("context_to_step"),
    )


def add_stream_history(parsed: DataFrame, stored: DataFrame, window_steps: int,
                       partitions: int | None = None) -> DataFrame:
    """The batch's rows, each transaction once, plus the customer-history and duplicate-claim columns.

    ``stored`` holds what the history table returned (:data:`STORED_HISTORY_SCHEMA`).
    A transaction that is both in the batch and stored (a replayed batch) or in
    the batch twice (sent twice) counts once: the batch's copy with the earliest
    offset is kept. The history features come from the batch side's own
    :func:`fraudlab.features.add_history_from_totals` over stored + batch rows;
    ``duplicate_claim``/``duplicate_of`` from :func:`fraudlab.scoring.add_duplicate_claims`
    over the same rows. The result
    is hash-partitioned by ``customer`` (``partitions`` of them, default the
    shuffle partitions): the three windows share that one shuffle.
    """
    batch_rows = (
        parsed.withColumn("_row_count", F.lit(1).cast("long"))
        .withColumn("_amount_total", F.col("amount"))
        .withColumn("_in_batch", F.lit(True))
    )
    stored_rows = stored.select(
        "customer",
        "step",
        "transaction_id",
        "merchant",
        "amount",
        F.col("row_count").alias("_row_count"),
        F.col("amount_total").alias("_amount_total"),
        F.lit(False).alias("_in_batch"),
    )
    union = batch_rows.unionByName(stored_rows, allowMissingColumns=True)
    by_customer = union.repartition(partitions, "customer") if partitions else union.repartition("customer")
    # Batch copies first, earliest offset first; summary rows (null id) are one per customer.
    copies = Window.partitionBy("customer", "transaction_id").orderBy(
        F.col("_in_batch").desc(), F.col("kafka_partition"), F.col("kafka_offset"))
    deduplicated = by_customer.withColumn("_copy", F.row_number().over(copies)).where(F.col("_copy") == 1)
    with_history = (
        features.add_history_from_totals(deduplicated, F.col("_row_count"), F.col("_amount_total"))
        # Summary rows only carry counts: they take no part in the duplicate rule.
        .where(F.col("transaction_id").isNotNull())
    )
    return (
        scoring.add_duplicate_claims(with_history, window_steps)
        .where(F.col("_in_batch"))
        .drop("_row_count", "_amount_total", "_in_batch", "_copy")
    )


# --------------------------------------------------------------------------- scoring


def score_messages(
    with_history: DataFrame,
    pipeline_model: PipelineModel,
    config: DetectionConfig,
    threshold: float,
    model_version: str | None = None,
) -> DataFrame:
    """Rows of :func:`add_stream_history` -> :data:`STREAM_SCORED_COLUMNS`.

    The batch scorer's steps (:func:`fraudlab.scoring.score_with_features`) with
    the history and duplicate columns already in place: ``log_amount``, the
    model's probability, the outlier and spike rules, the combined score.
    """
    predicted = train_pipeline.predict(pipeline_model, features.add_log_amount(with_history))
    decided = scoring.add_decision(
        predicted.withColumn("amount_outlier", scoring.is_amount_outlier(config)).withColumn(
            "customer_amount_spike", scoring.is_customer_amount_spike(config)
        ),
        config,
        threshold,
    ).withColumn("model_version", F.lit(model_version).cast("string"))
    return decided.select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in schemas.SCORED_SCHEMA.fields],
        F.col("kafka_timestamp"),
    )


# --------------------------------------------------------------------------- outputs


def is_alert(threshold: float) -> Column:
    """The transaction's combined score reaches the alert threshold."""
    return F.coalesce(F.col("fraud_score") >= F.lit(float(threshold)), F.lit(False))


def select_alerts(scored: DataFrame, threshold: float) -> DataFrame:
    """Scored rows whose ``fraud_score`` >= ``threshold`` -> ``key`` (transaction_id), ``value`` (JSON).

    The value holds :data:`ALERT_FIELDS` (score and reasons included) and nothing
    that changes between runs, so a re-sent alert is byte-identical to the first.
    """
    value = F.to_json(F.struct(*[F.col(name) for name in schemas.ALERT_FIELDS]), _JSON_OPTIONS)
    return scored.where(is_alert(threshold)).select(F.col("transaction_id").alias("key"), value.alias("value"))


def cassandra_rows(scored: DataFrame, alert_threshold: float, scored_at_ms: int) -> DataFrame:
    """Scored rows -> the values of ``scored_transactions``, ``alerts_by_day`` and ``customer_history``.

    Columns :data:`CASSANDRA_ROW_COLUMNS`. Timestamps are epoch milliseconds,
    which the driver binds as they are (a Python ``datetime`` would pass through
    the worker's local time zone). ``alert_date`` is the event's UTC day, so a
    replay writes the same alert row again; ``is_alert`` says whether the row
    goes to ``alerts_by_day``.
    """
    values = {name: F.col(name) for name in schemas.SCORED_TABLE_COLUMNS if name != "scored_at"}
    values.update(
        alert_date=F.to_date(F.col("event_time")),
        event_time=F.unix_millis(F.col("event_time")),
        scored_at=F.lit(int(scored_at_ms)).cast("long"),
        is_alert=is_alert(alert_threshold),
        kafka_timestamp_ms=F.unix_millis(F.col("kafka_timestamp")),
    )
    return scored.select(*[values[name].alias(name) for name in schemas.CASSANDRA_ROW_COLUMNS])


# --------------------------------------------------------------------------- replay pacing


@dataclass(frozen=True)
class ReplayPace:
    """How stream_csv_to_kafka spreads rows over time.

    ``rows_per_second``: chunks of ``rows_per_second * tick_seconds`` rows, one per
    tick. ``step_by_step``: one chunk per step, a step (one day of event time)
    lasting ``86400 / speedup`` seconds. Neither: one chunk, as fast as possible.
    """

    rows_per_second: float | None = None
    step_by_step: bool = False
    speedup: float = 8_640.0
    tick_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.rows_per_second is not None and self.step_by_step:
            raise ValueError("choose --rows-per-second or --step-by-step, not both")
        if self.rows_per_second is not None and not self.rows_per_second > 0:
            raise ValueError("rows_per_second must be > 0")
        if not self.speedup > 0 or not self.tick_seconds > 0:
            raise ValueError("speedup and tick_seconds must be > 0")

    @property
    def paced(self) -> bool:
        return self.rows_per_second is not None or self.step_by_step

    @property
    def rows_per_chunk(self) -> int:
        return max(1, round((self.rows_per_second or 0) * self.tick_seconds))

    def chunk(self) -> Column:
        """The chunk of a row of :func:`replay_order` (needs ``seq`` and ``step``)."""
        if self.step_by_step:
            return F.col("step").cast("long")
        if self.rows_per_second is not None:
            return F.floor((F.col("seq") - 1) / F.lit(self.rows_per_chunk)).cast("long")
        return F.lit(0).cast("long")

    def due_seconds(self, chunk: int, first_chunk: int = 0) -> float:
        """Seconds after the start at which ``chunk`` is due."""
        if self.step_by_step:
            return (chunk - first_chunk) * SECONDS_PER_STEP / self.speedup
        if self.rows_per_second is not None:
            return (chunk - first_chunk) * self.rows_per_chunk / self.rows_per_second
        return 0.0


def replay_order(prepared: DataFrame, limit: int | None = None) -> DataFrame:
    """Prepared rows in event order with ``seq`` (1, 2, ...); the first ``limit`` rows only when given.

    Order is ``step`` then ``transaction_id``, the same on every run.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    # One global order is the point here: the replay is sequential by nature.
    ordered = prepared.withColumn("seq", F.row_number().over(Window.orderBy("step", "transaction_id")))
    return ordered if limit is None else ordered.where(F.col("seq") <= F.lit(int(limit)))


# --------------------------------------------------------------------------- progress figures


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank; ``None`` for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must lie in [0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])
