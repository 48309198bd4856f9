"""The query of ``classify_stream.py`` and its micro-batch: validate, history, score, Cassandra, alerts
and dead letters.

:func:`start_query` reads the topic with Spark's Kafka source (from the earliest offsets on the first
start, then from the checkpoint) and runs :func:`batch_writer`'s function on every micro-batch
(``foreachBatch``). A batch is **two Spark jobs**; everything else runs on the driver, which holds
the batch's rows between them (a micro-batch is thousands of rows, not millions):

1. job one reads the batch from Kafka and judges every message by the preparation rules
   (:mod:`~fraudlab.streaming.codec`), collected as Arrow;
2. on the driver, a message whose transaction id was used before is sorted out
   (:mod:`~fraudlab.streaming.duplicates`: the same content is one row, other content a dead
   letter), and the batch's customers' stored history is read from Cassandra
   (:mod:`~fraudlab.streaming.sink`, ``customer_history``);
3. job two computes the customer-history features over stored + batch rows with the batch
   features' own code (:mod:`~fraudlab.streaming.history`) and scores them with the batch scorer's
   model and rules (:mod:`~fraudlab.streaming.alerts`), collected as Arrow: the Cassandra rows and
   each alert's message;
4. on the driver, every scored transaction is upserted into Cassandra (``scored_transactions``,
   ``alerts_by_day``, ``customer_history``), retried, failing the query if Cassandra stays away;
5. on the driver, the alerts (``fraud_score`` at or above the alert threshold, keyed by
   ``transaction_id``) and the dead letters (a rejected message with its reason and original bytes,
   encoded by a third, small job only when the batch has any) go to Kafka in one transaction
   (:mod:`~fraudlab.streaming.delivery`).

Exactly-once effect: Cassandra rows are keyed by ``transaction_id``, so the replay of a failed batch
(same offsets, from the checkpoint) rewrites the same rows, history included; the Kafka transaction
records the batch id, so a replayed batch whose messages were delivered does not send them again,
and a consumer reading with ``isolation.level=read_committed`` sees each alert once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from fraudlab import config, failpoints, schemas
from fraudlab.streaming import alerts, codec, delivery, duplicates, history, progress, sink

#: Micro-batches are small: few shuffle partitions, and no adaptive re-planning between the
#: stages of every batch (it costs more than it saves here).
DEFAULT_SHUFFLE_PARTITIONS = 2
#: A message's place in the topic (every message of one key is in one partition, in order).
KAFKA_POSITION = ["kafka_topic", "kafka_partition", "kafka_offset"]
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


class QueryHandle:
    """The started query, for the batch function: its first batch can run before ``start()`` returns."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._query: StreamingQuery | None = None

    def set(self, query: StreamingQuery) -> StreamingQuery:
        self._query = query
        self._started.set()
        return query

    def query_id(self, timeout_s: float = 120.0) -> str:
        """The query's id (kept in its checkpoint: the same after a restart)."""
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"the query did not start within {timeout_s:.0f} s")
        return str(self._query.id)


def source_ends(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """``{(topic, partition): next offset}`` after the batch's messages (its input's end, per partition)."""
    ends: dict[tuple[str, int], int] = {}
    for row in rows:
        where = (row["kafka_topic"], int(row["kafka_partition"]))
        ends[where] = max(ends.get(where, 0), int(row["kafka_offset"]) + 1)
    return ends


def batch_writer(outputs: StreamOutputs, pipeline_model: PipelineModel, threshold: float, version: str,
                 settings: sink.CassandraSettings, handle: QueryHandle, batch_figures: dict[int, dict],
                 kafka_out: list[delivery.TransactionalOutput],
                 on_first_batch: Callable[[str], None] | None = None) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: judge, score, write Cassandra, then alerts and dead letters to Kafka.

    Each batch's figures land in ``batch_figures[batch_id]`` for :class:`fraudlab.streaming.progress.ProgressLog`.
    The Kafka output (:class:`~fraudlab.streaming.delivery.TransactionalOutput`) is opened by the first
    batch, named after the query (``handle``), and put in ``kafka_out`` for the caller to close.
    ``on_first_batch(query_id)`` runs before the first batch of this start does anything else (the
    classifier stamps its checkpoint folder with it: :mod:`fraudlab.streaming.checkpoint`).
    """
    detection = config.DetectionConfig()
    window_steps = detection.duplicate_window_steps
    first = [True]

    def write_batch(batch_df: DataFrame, batch_id: int) -> None:
        started_ms = int(time.time() * 1000)
        if first[0] and on_first_batch is not None:
            on_first_batch(handle.query_id())
        first[0] = False
        stages = StageClock()
        spark = batch_df.sparkSession
        validated = codec.validate_messages(batch_df, outputs.start_date)
        judged = validated.toArrow()  # job one: the Kafka read and the preparation rules
        stages.lap("read_validate_ms")
        if judged.num_rows == 0:
            return
        is_valid = pc.is_null(judged["reason"])
        accepted, rejected = judged.filter(is_valid), judged.filter(pc.invert(is_valid))
        # A transaction id used before: the same content is one row, other content a dead letter.
        verdict = duplicates.sort_out(
            accepted.select(["transaction_id", *duplicates.CONTENT_COLUMNS, *KAFKA_POSITION]).to_pylist(),
            sink.read_digests(accepted["transaction_id"].to_pylist(), settings))
        if verdict.conflicts:
            clashes = accepted.take(list(verdict.conflicts))
            where = clashes.schema.get_field_index("reason")
            clashes = clashes.set_column(where, clashes.schema.field(where),
                                         pa.array(list(verdict.conflicts.values()), pa.string()))
            rejected = pa.concat_tables([rejected, clashes])
        valid = accepted.take(verdict.keep).select(schemas.PARSED_COLUMNS)
        stages.lap("duplicates_ms")
        parsed = spark.createDataFrame(valid, schema=validated.select(*schemas.PARSED_COLUMNS).schema)
        stored = sink.read_history(spark, history.history_requests(valid.select(["customer", "step"]).to_pylist(),
                                                                   window_steps), settings)
        stages.lap("history_read_ms")
        scored = alerts.score_messages(history.add_stream_history(parsed, stored, window_steps),
                                       pipeline_model, detection, threshold, version)
        rows = alerts.cassandra_rows(scored, outputs.alert_threshold, started_ms).toArrow().to_pylist()  # job two
        stages.lap("score_ms")

        written = sink.write_rows(rows, settings, verdict.digests)
        stages.lap("cassandra_write_ms")
        failpoints.failpoint("after_cassandra", batch_id)

        dead_letters = []
        if rejected.num_rows:  # rare: a small job of its own
            rejected_df = spark.createDataFrame(rejected, schema=validated.schema)
            dead_letters = codec.dead_letter_messages(codec.split_messages(rejected_df)[1]).collect()
        messages = ([(outputs.alerts_topic, row["transaction_id"].encode(), row["alert_message"].encode())
                     for row in rows if row["is_alert"]]
                    + [(outputs.dead_letter_topic, row["key"], row["value"].encode()) for row in dead_letters])
        if not kafka_out:
            kafka_out.append(delivery.TransactionalOutput(outputs.bootstrap_servers, handle.query_id()))
        sent = kafka_out[0].deliver(batch_id, messages, source_ends(judged.select(KAFKA_POSITION).to_pylist()))
        stages.lap("kafka_out_ms")
        failpoints.failpoint("after_kafka", batch_id)
        batch_figures[batch_id] = {
            "rows_written": written.rows,
            "alerts": written.alerts,
            "dead_letters": rejected.num_rows,
            "duplicate_conflicts": len(verdict.conflicts),
            "duplicates_merged": len(verdict.repeated),
            "kafka_messages_sent": sent,
            "cassandra_retries": written.retries,
            "batch_function_ms": int(time.time() * 1000) - started_ms,
            # Each step of the batch on its own: two Spark jobs (read_validate, score), the rest on the driver.
            "stages_ms": stages.laps,
            "latency_p50_ms": progress.percentile(written.latencies_ms, 50),
            "latency_p99_ms": progress.percentile(written.latencies_ms, 99),
            "latency_max_ms": progress.percentile(written.latencies_ms, 100),
        }

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
