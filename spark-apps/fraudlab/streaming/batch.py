"""The query of ``classify_stream.py`` and its micro-batch: validate, history, score, Cassandra, alerts
and dead letters.

:func:`start_query` reads the topic with Spark's Kafka source (from the earliest offsets on the first
start, then from the checkpoint) and runs :func:`batch_writer`'s function on every micro-batch
(``foreachBatch``):

1. :mod:`~fraudlab.streaming.codec` parses and validates the messages with the preparation rules; a
   rejected message goes to the dead-letter topic with its reason and original bytes;
2. :mod:`~fraudlab.streaming.history` computes the customer-history features from the history the
   stream keeps in Cassandra (``customer_history``) and :mod:`~fraudlab.streaming.alerts` scores with
   the batch scorer's feature code, saved model and rules;
3. :mod:`~fraudlab.streaming.sink` upserts every scored transaction into ``scored_transactions`` (and
   the alerts into ``alerts_by_day``, the history rows into ``customer_history``), retrying, failing
   the query if Cassandra stays away;
4. each transaction whose ``fraud_score`` reaches the alert threshold goes to the alerts topic as JSON,
   keyed by ``transaction_id``.

Exactly-once effect: Cassandra rows are keyed by ``transaction_id``, so the replay of a failed batch
(same offsets, from the checkpoint) rewrites the same rows, history included. Kafka alerts are
at-least-once: a replayed batch may send an alert again, byte-identical and with the same key, so a
consumer that dedupes by key (or a compacted topic) sees each alert once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql import functions as F

from fraudlab import config
from fraudlab.streaming import alerts, codec, history, progress, sink

#: Micro-batches are small: few shuffle partitions, and no adaptive re-planning between the
#: stages of every batch (it costs more than it saves here).
DEFAULT_SHUFFLE_PARTITIONS = 2
STREAM_CONF = {"spark.sql.shuffle.partitions": str(DEFAULT_SHUFFLE_PARTITIONS), "spark.sql.adaptive.enabled": "false"}


def apply_stream_conf(spark: SparkSession, shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS) -> dict[str, str]:
    """Set the stream's SQL settings on the session, whatever spark-defaults.conf or --conf said.

    ``spark.sql.shuffle.partitions`` = ``shuffle_partitions`` and adaptive execution off, set with
    ``spark.conf.set`` (runtime SQL conf, read by every plan of the session: the query's batches
    included). Returns the effective values, read back from the session.
    """
    if shuffle_partitions < 1:
        raise ValueError("shuffle_partitions must be >= 1")
    wanted = {**STREAM_CONF, "spark.sql.shuffle.partitions": str(int(shuffle_partitions))}
    for key, value in wanted.items():
        spark.conf.set(key, value)
    return {key: spark.conf.get(key) for key in wanted}


@dataclass(frozen=True)
class StreamOutputs:
    """Where a batch's results go besides Cassandra, and what is an alert (flags of ``classify_stream.py``)."""

    bootstrap_servers: str
    alerts_topic: str
    dead_letter_topic: str
    alert_threshold: float
    start_date: str = config.DEFAULT_START_DATE


class StageClock:
    """Milliseconds of each step of a batch, in order: ``lap(name)`` closes the step that ran since the last lap."""

    def __init__(self) -> None:
        self.laps: dict[str, int] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> int:
        now = time.perf_counter()
        self.laps[name] = int(round((now - self._last) * 1000))
        self._last = now
        return self.laps[name]


def batch_writer(outputs: StreamOutputs, pipeline_model: PipelineModel, threshold: float, version: str,
                 settings: sink.CassandraSettings, writers: int,
                 batch_figures: dict[int, dict]) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: parse, score, write Cassandra, then alerts and dead letters to Kafka.

    Each batch's figures land in ``batch_figures[batch_id]`` for :class:`fraudlab.streaming.progress.ProgressLog`.
    """
    detection = config.DetectionConfig()
    window_steps = detection.duplicate_window_steps

    def write_batch(batch_df, batch_id: int) -> None:
        started_ms = int(time.time() * 1000)
        stages = StageClock()
        validated = codec.validate_messages(batch_df, outputs.start_date).persist()
        with_history = scored = None
        try:
            validated.count()  # materialise the cache: the Kafka read and the validation, timed alone
            stages.lap("validate_ms")
            parsed, dead = codec.split_messages(validated)
            stored = sink.read_history(history.history_requests(parsed, window_steps), settings)
            stages.lap("history_read_ms")
            with_history = history.add_stream_history(parsed, stored, window_steps, partitions=writers).persist()
            with_history.count()
            stages.lap("history_window_ms")
            scored = alerts.score_messages(with_history, pipeline_model, detection, threshold, version).persist()
            scored.count()
            stages.lap("scoring_ms")

            written = sink.write_rows(
                alerts.cassandra_rows(scored, outputs.alert_threshold, started_ms), settings)
            stages.lap("cassandra_write_ms")
            written_ms = int(time.time() * 1000)

            dead_letters = dead.count()  # from the cached messages: no second read of Kafka
            out = (
                alerts.select_alerts(scored, outputs.alert_threshold).withColumn("topic", F.lit(outputs.alerts_topic))
                .unionByName(codec.dead_letter_messages(dead).withColumn("topic", F.lit(outputs.dead_letter_topic)))
                .coalesce(1)  # a handful of messages: one task, not one per partition
            )
            out.write.format("kafka").option("kafka.bootstrap.servers", outputs.bootstrap_servers).save()
            stages.lap("kafka_out_ms")
            batch_figures[batch_id] = {
                "rows_written": written.rows,
                "alerts": written.alerts,
                "dead_letters": dead_letters,
                "cassandra_retries": written.retries,
                # Parse, history, scoring and the Cassandra writes; then dead letters and alerts to Kafka.
                "score_and_cassandra_ms": written_ms - started_ms,
                "kafka_out_ms": int(time.time() * 1000) - written_ms,
                # Each step of the batch on its own (every step ends with an action).
                "stages_ms": stages.laps,
                "latency_p50_ms": progress.percentile(written.latencies_ms, 50),
                "latency_p99_ms": progress.percentile(written.latencies_ms, 99),
                "latency_max_ms": progress.percentile(written.latencies_ms, 100),
            }
        finally:
            for frame in (scored, with_history, validated):
                if frame is not None:
                    frame.unpersist()

    return write_batch


def start_query(spark: SparkSession, name: str, bootstrap_servers: str, topic: str, write_batch,
                checkpoint: str, available_now: bool, trigger_interval: str,
                max_offsets_per_trigger: int | None = None) -> StreamingQuery:
    """Start ``write_batch`` over ``topic`` (earliest offsets first, then the checkpoint's)."""
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if max_offsets_per_trigger:
        source = source.option("maxOffsetsPerTrigger", max_offsets_per_trigger)
    writer = (
        source.load().select(*codec.KAFKA_COLUMNS).writeStream.queryName(name)
        .foreachBatch(write_batch)
        .option("checkpointLocation", checkpoint)
    )
    trigger = {"availableNow": True} if available_now else {"processingTime": trigger_interval}
    return writer.trigger(**trigger).start()
