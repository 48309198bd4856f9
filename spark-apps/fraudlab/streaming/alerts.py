"""What a micro-batch's rows become: scores, the alert decision, alert messages and Cassandra rows.

:func:`score_messages` runs the batch scorer's steps over rows that already carry their history
(:mod:`fraudlab.streaming.history`); :func:`select_alerts` encodes the rows whose ``fraud_score``
reaches the alert threshold for the alerts topic, and :func:`cassandra_rows` lays every row out for
the three tables the sink writes (:mod:`fraudlab.streaming.sink`).
"""

from __future__ import annotations

from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab import features, schemas, scoring
from fraudlab.config import DetectionConfig
from fraudlab.streaming import codec
from fraudlab.train import pipeline as train_pipeline


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


def is_alert(threshold: float) -> Column:
    """The transaction's combined score reaches the alert threshold."""
    return F.coalesce(F.col("fraud_score") >= F.lit(float(threshold)), F.lit(False))


def alert_message() -> Column:
    """The alerts topic's value of a scored row: the JSON of :data:`ALERT_FIELDS` (score and reasons included).

    It holds nothing that changes between runs, so a re-sent alert is byte-identical to the first.
    """
    return F.to_json(F.struct(*[F.col(name) for name in schemas.ALERT_FIELDS]), codec.JSON_OPTIONS)


def select_alerts(scored: DataFrame, threshold: float) -> DataFrame:
    """Scored rows whose ``fraud_score`` >= ``threshold`` -> ``key`` (transaction_id), ``value`` (:func:`alert_message`)."""
    return scored.where(is_alert(threshold)).select(F.col("transaction_id").alias("key"),
                                                    alert_message().alias("value"))


def cassandra_rows(scored: DataFrame, alert_threshold: float, scored_at_ms: int) -> DataFrame:
    """Scored rows -> the values of ``scored_transactions``, ``alerts_by_day`` and ``customer_history``, and
    the alert's message.

    Columns :data:`CASSANDRA_ROW_COLUMNS`. Timestamps are epoch milliseconds,
    which the driver binds as they are (a Python ``datetime`` would pass through
    the worker's local time zone). ``alert_date`` is the event's UTC day, so a
    replay writes the same alert row again; ``is_alert`` says whether the row
    goes to ``alerts_by_day``, and ``alert_message`` is then its value on the alerts topic
    (:func:`alert_message`; null for a row that is no alert).
    """
    values = {name: F.col(name) for name in schemas.SCORED_TABLE_COLUMNS if name != "scored_at"}
    values.update(
        alert_date=F.to_date(F.col("event_time")),
        event_time=F.unix_millis(F.col("event_time")),
        scored_at=F.lit(int(scored_at_ms)).cast("long"),
        is_alert=is_alert(alert_threshold),
        kafka_timestamp_ms=F.unix_millis(F.col("kafka_timestamp")),
        alert_message=F.when(is_alert(alert_threshold), alert_message()),
    )
    return scored.select(*[values[name].alias(name) for name in schemas.CASSANDRA_ROW_COLUMNS])
