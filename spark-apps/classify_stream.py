"""Classify the transactions stream: score every transaction into Cassandra, alerts and dead letters to Kafka.

Usage:
    spark-submit --jars "$(ls .lab/jars/spark-kafka/*.jar | paste -sd,)" spark-apps/classify_stream.py \
        [--model models:/fraudlab_fraud_classifier@champion | data/models/fraud_model] \
        [--tracking-uri sqlite:///data/mlflow/mlflow.db] [--threshold 0.5] [--alert-threshold 0.8] \
        [--bootstrap-servers 127.0.0.1:9092] [--topic transactions] [--alerts-topic fraud_alerts] \
        [--dead-letter-topic transactions_dlq] [--max-offsets-per-trigger 10000] \
        [--cassandra-host 127.0.0.1] [--cassandra-port 9042] [--keyspace fraudlab] \
        [--checkpoint data/checkpoints/classify_stream] \
        [--trigger-interval "2 seconds" | --available-now] [--progress-file progress.jsonl]

Reads ``--topic`` with Spark's Kafka source (from the earliest offsets on the
first start, then from the checkpoint). Each micro-batch (``foreachBatch``):

1. parses and validates the messages with the preparation rules; a rejected
   message goes to ``--dead-letter-topic`` with its reason and original bytes;
2. computes the customer-history features from the history the stream keeps in
   Cassandra (``customer_history``; see :mod:`fraudlab.streaming`) and scores
   with the batch scorer's feature code, saved model and rules;
3. upserts every scored transaction into ``scored_transactions`` (and the
   alerts into ``alerts_by_day``, the history rows into ``customer_history``)
   with cassandra-driver, retrying, failing the query if Cassandra stays away;
4. sends each transaction whose ``fraud_score`` >= ``--alert-threshold`` to
   ``--alerts-topic`` as JSON, keyed by ``transaction_id``.

Exactly-once effect: Cassandra rows are keyed by ``transaction_id``, so the
replay of a failed batch (same offsets, from the checkpoint) rewrites the same
rows, history included. Kafka alerts are at-least-once: a replayed batch may
send an alert again, byte-identical and with the same key, so a consumer that
dedupes by key (or a compacted topic) sees each alert once.

``--available-now`` processes what is in the topic and exits (Airflow's mode);
otherwise the query runs on ``--trigger-interval`` until SIGTERM or SIGINT
(graceful stop). Each batch logs rows, rows per second, duration and the
end-to-end latency (Cassandra write minus Kafka timestamp, p50/p99) from a
``StreamingQueryListener``; ``--progress-file`` also appends them as JSON lines.

Exit codes: 0 stopped or done; 1 the query failed; 2 unusable model or flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pyspark.sql import functions as F
from pyspark.sql.streaming.listener import StreamingQueryListener

from fraudlab import cassandra_sink, config, registry, streaming
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark

APP_NAME = "classify_stream"
log = logging.getLogger(APP_NAME)

DEFAULT_CHECKPOINT = config.DATA_DIR / "checkpoints" / APP_NAME
#: Micro-batches are small: few shuffle partitions, and no adaptive re-planning between the
#: stages of every batch (it costs more than it saves here). --conf overrides both.
STREAM_CONF = {"spark.sql.shuffle.partitions": "2", "spark.sql.adaptive.enabled": "false"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = config.DetectionConfig()
    sink = cassandra_sink.CassandraSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=registry.champion_uri(), help="model folder or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", default=config.MLFLOW_TRACKING_URI)
    parser.add_argument("--threshold", type=float, default=None,
                        help="model decision threshold (default: the one chosen at training)")
    parser.add_argument("--alert-threshold", type=float, default=defaults.alert_threshold,
                        help="fraud_score from which a transaction is sent as an alert")
    parser.add_argument("--bootstrap-servers", default=config.KAFKA_BOOTSTRAP)
    parser.add_argument("--topic", default=config.TOPIC_TRANSACTIONS, help="transactions to classify")
    parser.add_argument("--alerts-topic", default=config.TOPIC_ALERTS)
    parser.add_argument("--dead-letter-topic", default=config.TOPIC_DEAD_LETTER)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None, help="cap on messages per batch")
    parser.add_argument("--cassandra-host", default=config.CASSANDRA_HOST)
    parser.add_argument("--cassandra-port", type=int, default=config.CASSANDRA_PORT)
    parser.add_argument("--keyspace", default=config.CASSANDRA_KEYSPACE)
    parser.add_argument("--write-concurrency", type=int, default=sink.concurrency,
                        help="Cassandra requests in flight per writer")
    parser.add_argument("--write-retry-seconds", type=float, default=sink.retry_seconds,
                        help="how long failed Cassandra statements are retried before the query fails")
    parser.add_argument("--writers", type=int, default=None,
                        help="parallel Cassandra writers per batch (default: Spark's default parallelism)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint folder of the query")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--trigger-interval", default="2 seconds", help='micro-batch interval, e.g. "1 second"')
    mode.add_argument("--available-now", action="store_true", help="process what is in the topic, then exit")
    parser.add_argument("--start-date", default=config.DEFAULT_START_DATE,
                        help="date of step 0 (for messages validated without an event_time; none are)")
    parser.add_argument("--progress-file", default=None, help="append each batch's figures here as JSON lines")
    args = parser.parse_args(argv)
    if not 0.0 < args.alert_threshold <= 1.0:
        parser.error("--alert-threshold must lie in (0, 1]")
    if args.max_offsets_per_trigger is not None and args.max_offsets_per_trigger < 1:
        parser.error("--max-offsets-per-trigger must be >= 1")
    return args


class ProgressLog(StreamingQueryListener):
    """Logs each batch: rows, rows per second, duration, and the sink's latency figures."""

    def __init__(self, batch_figures: dict[int, dict], progress_file: str | None) -> None:
        self.batch_figures = batch_figures
        self.progress_file = Path(progress_file) if progress_file else None
        self.terminated = threading.Event()

    def onQueryStarted(self, event) -> None:
        log.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        figures = {
            "batch_id": progress.batchId,
            "timestamp": progress.timestamp,
            "input_rows": progress.numInputRows,
            "input_rows_per_s": progress.inputRowsPerSecond,
            "processed_rows_per_s": progress.processedRowsPerSecond,
            "batch_ms": progress.durationMs.get("triggerExecution"),
            **self.batch_figures.pop(progress.batchId, {}),
        }
        log.info(
            "batch %d: %d rows in %s ms (%.0f rows/s processed), %s written, %s alerts, %s dead letters, "
            "latency p50 %s ms p99 %s ms",
            progress.batchId, progress.numInputRows, figures["batch_ms"], progress.processedRowsPerSecond or 0.0,
            figures.get("rows_written", 0), figures.get("alerts", 0), figures.get("dead_letters", 0),
            _ms(figures.get("latency_p50_ms")), _ms(figures.get("latency_p99_ms")),
        )  # fmt: skip
        if self.progress_file is not None:
            with self.progress_file.open("a") as out:
                out.write(json.dumps(figures, default=str) + "\n")

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        if event.exception:
            log.error("query %s failed: %s", event.id, event.exception.splitlines()[0])
        else:
            log.info("query %s stopped", event.id)
        self.terminated.set()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def model_version(info: dict) -> str:
    """The registry version, else the version the saved folder was registered as, else its path."""
    mlflow_info = (info.get("metrics") or {}).get("mlflow") or {}
    return str(info.get("version") or mlflow_info.get("registered_version") or info["source"])


def batch_writer(args, pipeline_model, threshold: float, version: str,
                 settings: cassandra_sink.CassandraSettings, writers: int, batch_figures: dict[int, dict]):
    """The ``foreachBatch`` function: parse, score, write Cassandra, then alerts and dead letters to Kafka."""
    detection = config.DetectionConfig()
    window_steps = detection.duplicate_window_steps

    def write_batch(batch_df, batch_id: int) -> None:
        started_ms = int(time.time() * 1000)
        validated = streaming.validate_messages(batch_df, args.start_date).persist()
        scored = None
        try:
            parsed, dead = streaming.split_messages(validated)
            stored = cassandra_sink.read_history(streaming.history_requests(parsed, window_steps), settings)
            with_history = streaming.add_stream_history(parsed, stored, window_steps, partitions=writers)
            scored = streaming.score_messages(with_history, pipeline_model, detection, threshold, version).persist()

            written = cassandra_sink.write_rows(
                streaming.cassandra_rows(scored, args.alert_threshold, started_ms), settings)
            written_ms = int(time.time() * 1000)

            dead_letters = dead.count()  # from the cached messages: no second read of Kafka
            out = (
                streaming.select_alerts(scored, args.alert_threshold).withColumn("topic", F.lit(args.alerts_topic))
                .unionByName(streaming.dead_letter_messages(dead).withColumn("topic", F.lit(args.dead_letter_topic)))
                .coalesce(1)  # a handful of messages: one task, not one per partition
            )
            out.write.format("kafka").option("kafka.bootstrap.servers", args.bootstrap_servers).save()
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    spark = build_spark(APP_NAME)
    submitted = spark.sparkContext.getConf()
    for key, value in STREAM_CONF.items():
        if not submitted.contains(key):
            spark.conf.set(key, value)
    try:
        try:
            pipeline_model, info, threshold = registry.load_scoring_model(args.model, args.tracking_uri,
                                                                          args.threshold)
        except registry.ModelLoadError as err:
            log.error("%s", err)
            return 2
        version = model_version(info)
        settings = cassandra_sink.CassandraSettings(
            hosts=(args.cassandra_host,), port=args.cassandra_port, keyspace=args.keyspace,
            concurrency=args.write_concurrency, retry_seconds=args.write_retry_seconds,
        )  # fmt: skip
        writers = args.writers or spark.sparkContext.defaultParallelism

        batch_figures: dict[int, dict] = {}
        listener = ProgressLog(batch_figures, args.progress_file)
        spark.streams.addListener(listener)

        source = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", args.bootstrap_servers)
            .option("subscribe", args.topic)
            .option("startingOffsets", "earliest")
        )
        if args.max_offsets_per_trigger:
            source = source.option("maxOffsetsPerTrigger", args.max_offsets_per_trigger)
        messages = source.load().select(*streaming.KAFKA_COLUMNS)

        writer = (
            messages.writeStream.queryName(APP_NAME)
            .foreachBatch(batch_writer(args, pipeline_model, float(threshold), version, settings, writers,
                                       batch_figures))
            .option("checkpointLocation", args.checkpoint)
        )
        writer = writer.trigger(availableNow=True) if args.available_now else writer.trigger(
            processingTime=args.trigger_interval)
        query = writer.start()
        log.info("classifying %s -> Cassandra %s, alerts (fraud_score >= %.2f) -> %s, dead letters -> %s; "
                 "model %s (threshold %.4f), checkpoint %s, %s",
                 args.topic, args.keyspace, args.alert_threshold, args.alerts_topic, args.dead_letter_topic,
                 version, threshold, args.checkpoint,
                 "available-now" if args.available_now else f"every {args.trigger_interval}")
        return await_query(query, listener)
    finally:
        spark.stop()


def await_query(query, listener: ProgressLog) -> int:
    """Wait for the query; stop it gracefully on SIGTERM/SIGINT. 0 when it ended cleanly, 1 when it failed."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while query.isActive:
            if stop.is_set():
                log.info("stop requested: stopping the query (an unfinished batch is replayed on the next start)")
                query.stop()
                break
            query.awaitTermination(1)
        query.awaitTermination()
    except Exception as err:  # noqa: BLE001  (StreamingQueryException and friends: the query failed)
        log.error("query failed: %s", str(err).splitlines()[0] if str(err) else repr(err))
        listener.terminated.wait(10)
        return 1
    listener.terminated.wait(10)  # let the listener log the last batch before the session stops
    return 0


if __name__ == "__main__":
    sys.exit(main())
