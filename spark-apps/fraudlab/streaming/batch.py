"""One micro-batch of ``classify_stream.py``: validate, history, score, Cassandra, alerts and dead letters.

The steps are the pure functions of :mod:`fraudlab.streaming`; this module chains them with the
Cassandra sink and Spark's Kafka sink, and times them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fraudlab import cassandra_sink, config, streaming

#: Micro-batches are small: few shuffle partitions, and no adaptive re-planning between the
#: stages of every batch (it costs more than it saves here). --conf overrides both.
STREAM_CONF = {"spark.sql.shuffle.partitions": "2", "spark.sql.adaptive.enabled": "false"}


@dataclass(frozen=True)
class StreamOutputs:
    """Where a batch's results go besides Cassandra, and what is an alert (flags of ``classify_stream.py``)."""

    bootstrap_servers: str
    alerts_topic: str
    dead_letter_topic: str
    alert_threshold: float
    start_date: str = config.DEFAULT_START_DATE


def batch_writer(outputs: StreamOutputs, pipeline_model: PipelineModel, threshold: float, version: str,
                 settings: cassandra_sink.CassandraSettings, writers: int,
                 batch_figures: dict[int, dict]) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: parse, score, write Cassandra, then alerts and dead letters to Kafka.

    Each batch's figures land in ``batch_figures[batch_id]`` for :class:`fraudlab.streaming.progress.ProgressLog`.
    """
    detection = config.DetectionConfig()
    window_steps = detection.duplicate_window_steps

    def write_batch(batch_df, batch_id: int) -> None:
        started_ms = int(time.time() * 1000)
        validated = streaming.validate_messages(batch_df, outputs.start_date).persist()
        scored = None
        try:
            parsed, dead = streaming.split_messages(validated)
            stored = cassandra_sink.read_history(streaming.history_requests(parsed, window_steps), settings)
            with_history = streaming.add_stream_history(parsed, stored, window_steps, partitions=writers)
            scored = streaming.score_messages(with_history, pipeline_model, detection, threshold, version).persist()

            written = cassandra_sink.write_rows(
                streaming.cassandra_rows(scored, outputs.alert_threshold, started_ms), settings)
            written_ms = int(time.time() * 1000)

            dead_letters = dead.count()  # from the cached messages: no second read of Kafka
            out = (
                streaming.select_alerts(scored, outputs.alert_threshold).withColumn("topic", F.lit(outputs.alerts_topic))
                .unionByName(streaming.dead_letter_messages(dead).withColumn("topic", F.lit(outputs.dead_letter_topic)))
                .coalesce(1)  # a handful of messages: one task, not one per partition
            )
            out.write.format("kafka").option("kafka.bootstrap.servers", outputs.bootstrap_servers).save()
            batch_figures[batch_id] = {
                "rows_written": written.rows,
                "alerts": written.alerts,
                "dead_letters": dead_letters,
                "cassandra_retries": written.retries,
                # Parse, history, scoring and the Cassandra writes; then dead letters and alerts to Kafka.
                "score_and_cassandra_ms": written_ms - started_ms,
                "kafka_out_ms": int(time.time() * 1000) - written_ms,
                "latency_p50_ms": streaming.percentile(written.latencies_ms, 50),
                "latency_p99_ms": streaming.percentile(written.latencies_ms, 99),
                "latency_max_ms": streaming.percentile(written.latencies_ms, 100),
            }
        finally:
            if scored is not None:
                scored.unpersist()
            validated.unpersist()

    return write_batch
