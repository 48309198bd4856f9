"""Classify the transactions stream: score every transaction into Cassandra, alerts and dead letters to Kafka.

Usage:
    spark-submit --jars "$(ls .lab/jars/spark-kafka/*.jar | paste -sd,)" spark-apps/classify_stream.py \
        [--model models:/fraudlab_fraud_classifier@champion | data/models/fraud_model] \
        [--tracking-uri sqlite:///data/mlflow/mlflow.db] [--threshold 0.5] [--alert-threshold 0.8] \
        [--bootstrap-servers 127.0.0.1:9092] [--topic transactions] [--alerts-topic fraud_alerts] \
        [--dead-letter-topic transactions_dlq] [--max-offsets-per-trigger 10000] \
        [--cassandra-host 127.0.0.1] [--cassandra-port 9042] [--keyspace fraudlab] \
        [--checkpoint data/checkpoints/classify_stream [--new-checkpoint]] [--shuffle-partitions 2] \
        [--trigger-interval "2 seconds" | --available-now] [--progress-file progress.jsonl]

Scores every message of ``--topic`` into Cassandra (``--keyspace``: ``scored_transactions``,
``alerts_by_day``, ``customer_history``), sends each transaction whose ``fraud_score`` reaches
``--alert-threshold`` to ``--alerts-topic`` and each invalid message, with its reason, to
``--dead-letter-topic``; the steps of a micro-batch are in :mod:`fraudlab.streaming.batch`.
Alerts and dead letters go out in one Kafka transaction per batch, so a consumer reading with
``isolation.level=read_committed`` sees each once, across crashes (:mod:`fraudlab.streaming.delivery`).
``--available-now`` processes what is in the topic and exits (Airflow's mode); otherwise the query
runs every ``--trigger-interval`` until SIGTERM or SIGINT (a graceful stop). Each batch logs its rows,
rate, duration and end-to-end latency (p50/p99); ``--progress-file`` appends them as JSON lines.

The checkpoint folder is read before the query starts (:mod:`fraudlab.streaming.checkpoint`): a damaged
one, or an empty one where the keyspace records that a query kept its progress (a lost checkpoint:
starting over would send every alert a second time), is refused in one line, unless
``--new-checkpoint`` asks for that new start.

Exit codes: 0 stopped or done; 1 the query failed; 2 unusable model, flags or checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fraudlab import cli, config, registry
from fraudlab.io import kafka
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark
from fraudlab.streaming import batch, checkpoint, sink
from fraudlab.streaming.progress import ProgressLog, await_query

APP_NAME = "classify_stream"
log = logging.getLogger(APP_NAME)

DEFAULT_CHECKPOINT = config.DATA_DIR / "checkpoints" / APP_NAME


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = config.DetectionConfig()
    writes = sink.CassandraSettings()
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--model", default=registry.champion_uri(), help="model folder or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", default=config.MLFLOW_TRACKING_URI)
    parser.add_argument("--threshold", type=cli.probability, default=None,
                        help="model decision threshold (default: the one chosen at training)")
    parser.add_argument("--alert-threshold", type=cli.number_between(0.0, 1.0, low_open=True),
                        default=defaults.alert_threshold,
                        help="fraud_score from which a transaction is sent as an alert")
    parser.add_argument("--bootstrap-servers", default=config.KAFKA_BOOTSTRAP)
    parser.add_argument("--topic", default=config.TOPIC_TRANSACTIONS, help="transactions to classify")
    parser.add_argument("--alerts-topic", default=config.TOPIC_ALERTS)
    parser.add_argument("--dead-letter-topic", default=config.TOPIC_DEAD_LETTER)
    parser.add_argument("--max-offsets-per-trigger", type=cli.int_at_least(1), default=None,
                        help="cap on messages per batch")
    parser.add_argument("--cassandra-host", default=config.CASSANDRA_HOST)
    parser.add_argument("--cassandra-port", type=cli.port, default=config.CASSANDRA_PORT)
    parser.add_argument("--keyspace", default=config.CASSANDRA_KEYSPACE)
    parser.add_argument("--write-concurrency", type=cli.int_at_least(1), default=writes.concurrency,
                        help="Cassandra requests in flight per writer")
    parser.add_argument("--write-retry-seconds", type=cli.number_at_least(0.0), default=writes.retry_seconds,
                        help="how long failed Cassandra statements are retried before the query fails")
    parser.add_argument("--shuffle-partitions", type=cli.int_at_least(1), default=batch.DEFAULT_SHUFFLE_PARTITIONS,
                        help="shuffle partitions of every micro-batch (set on the session, over "
                             "spark-defaults.conf; adaptive execution is turned off)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint folder of the query")
    parser.add_argument("--new-checkpoint", action="store_true",
                        help="start over on purpose in an empty --checkpoint folder whose query's progress was "
                             "lost: the topic is classified again from its earliest offset, and alerts already "
                             "sent are sent a second time")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--trigger-interval", type=cli.interval, default="2 seconds",
                      help='micro-batch interval, e.g. "1 second"')
    mode.add_argument("--available-now", action="store_true", help="process what is in the topic, then exit")
    parser.add_argument("--start-date", type=cli.iso_date, default=config.DEFAULT_START_DATE,
                        help="date of step 0 (for messages validated without an event_time; none are)")
    parser.add_argument("--progress-file", default=None, help="append each batch's figures here as JSON lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = sink.CassandraSettings(
        hosts=(args.cassandra_host,), port=args.cassandra_port, keyspace=args.keyspace,
        concurrency=args.write_concurrency, retry_seconds=args.write_retry_seconds)
    kafka_out: list = []
    spark = build_spark(APP_NAME)
    try:
        if not kafka.connector_available(spark):
            log.error("%s", kafka.MISSING_CONNECTOR)
            return 2
        effective = batch.apply_stream_conf(spark, args.shuffle_partitions)
        log.info("stream settings: %s", ", ".join(f"{key}={value}" for key, value in effective.items()))
        try:
            pipeline_model, info, threshold = registry.load_scoring_model(args.model, args.tracking_uri,
                                                                          args.threshold)
        except registry.ModelLoadError as err:
            log.error("%s", err)
            return 2
        try:  # a lost or damaged checkpoint is refused, never silently started over
            state = checkpoint.inspect(args.checkpoint)
            refused = checkpoint.refusal(state, args.new_checkpoint, args.keyspace,
                                         lambda key: sink.checkpoint_stamp(settings, key))
        except checkpoint.CheckpointError as err:
            refused = checkpoint.damaged_message(args.checkpoint, err)
        except sink.CassandraSinkError as err:
            log.error("Cassandra: %s", err)
            return 1
        if refused:
            log.error("%s", refused)
            return 2
        version = registry.model_version(info)
        outputs = batch.StreamOutputs(args.bootstrap_servers, args.alerts_topic, args.dead_letter_topic,
                                      args.alert_threshold, args.start_date)
        batch_figures: dict[int, dict] = {}
        listener = ProgressLog(batch_figures, args.progress_file)
        spark.streams.addListener(listener)
        handle = batch.QueryHandle()
        write_batch = batch.batch_writer(
            outputs, pipeline_model, float(threshold), version, settings, handle, batch_figures, kafka_out,
            on_first_batch=lambda query_id: sink.stamp_checkpoint(settings, state.key, query_id, args.topic))
        query = handle.set(batch.start_query(spark, APP_NAME, args.bootstrap_servers, args.topic, write_batch,
                                             args.checkpoint, args.available_now, args.trigger_interval,
                                             args.max_offsets_per_trigger))
        log.info("classifying %s -> Cassandra %s, alerts (fraud_score >= %.2f) -> %s, dead letters -> %s; "
                 "model %s (threshold %.4f), checkpoint %s, %s",
                 args.topic, args.keyspace, args.alert_threshold, args.alerts_topic, args.dead_letter_topic,
                 version, threshold, args.checkpoint,
                 "available-now" if args.available_now else f"every {args.trigger_interval}")
        return await_query(query, listener)
    finally:
        for output in kafka_out:
            output.close()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
