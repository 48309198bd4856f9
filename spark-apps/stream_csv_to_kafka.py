"""Replay a BankSim CSV into Kafka: each valid row as a JSON message, keyed by transaction_id, in event order.

Usage:
    spark-submit --jars "$(ls .lab/jars/spark-kafka/*.jar | paste -sd,)" spark-apps/stream_csv_to_kafka.py \
        --input data/raw/transactions.csv [--bootstrap-servers 127.0.0.1:9092] [--topic transactions] \
        [--limit N] [--rows-per-second N [--tick-seconds 1.0] | --step-by-step [--speedup 8640]] \
        [--quarantine data/stream/quarantine] [--metrics data/stream/quarantine/_metrics.json] \
        [--start-date 2024-01-01]

The CSV is read, parsed and validated exactly as ``prepare_data.py`` does
(``fraudlab.io.read_lines`` + the stages of ``fraudlab.data.parsing.parse_lines``), so a row gets the
same ``transaction_id`` on every run and in the batch pipeline. Rejected rows are
written to ``--quarantine`` (JSON lines with the raw line and the reasons) and
never sent. Valid rows are sorted by ``step`` (then ``transaction_id``);
``--limit N`` sends the first N of them. The value is the JSON of
``fraudlab.schemas.TRANSACTION_MESSAGE_SCHEMA``; Spark's Kafka sink writes it.

Pace: by default everything at once, as fast as the sink goes (so does
``--rows-per-second 0``). ``--rows-per-second N`` sends chunks of ``N * tick`` rows
every ``--tick-seconds``. ``--step-by-step`` sends one step (one day of event time)
at a time, compressed by ``--speedup`` (the default 8640 makes a day last 10 s).
Each chunk is written by one task, so every Kafka partition receives its rows in
event order.

``_metrics.json`` (``--metrics``, default inside the quarantine folder) holds
``rows_in`` (data lines), ``rows_sent``, ``rows_quarantined``, the reasons, the
pace and the timings; the counts also go to the log. The quarantine folder (with
the metrics when they are inside it) replaces the earlier replay's only once every
message is sent (``fraudlab.io.publishing``): a replay Kafka refused keeps the
earlier record whole. Neither may be or lie inside ``--input``.

Exit codes: 0 done; 1 Kafka refused the messages; 2 unusable input or flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pyspark.sql import functions as F

from fraudlab import cli, config, io
from fraudlab.io import claims, kafka
from fraudlab.io.files import qualified
from fraudlab.logs import configure_logging, first_line
from fraudlab.data.parsing import quarantine_reasons, split_fields, split_valid, validate
from fraudlab.session import build_spark
from fraudlab.streaming import codec, replay
from fraudlab.streaming.replay import replay_metrics, send_paced

APP_NAME = "stream_csv_to_kafka"
log = logging.getLogger(APP_NAME)

DEFAULT_QUARANTINE = config.DATA_DIR / "stream" / "quarantine"


class SendFailed(Exception):
    """Kafka refused the messages (raised inside the quarantine's publishing, which then keeps the earlier one)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--input", default=str(config.RAW_CSV), help="BankSim CSV file or folder")
    parser.add_argument("--bootstrap-servers", default=config.KAFKA_BOOTSTRAP)
    parser.add_argument("--topic", default=config.TOPIC_TRANSACTIONS)
    parser.add_argument("--limit", type=cli.int_at_least(0), default=None,
                        help="send only the first N valid rows (by step)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rows-per-second", type=cli.rate, default=None,
                      help="offered rate; 0: as fast as possible")
    pace.add_argument("--step-by-step", action="store_true", help="one step (a day) at a time, see --speedup")
    parser.add_argument("--speedup", type=cli.number_at_least(0.0, open_=True), default=8_640.0,
                        help="with --step-by-step: event time runs this many times faster than real time")
    parser.add_argument("--tick-seconds", type=cli.number_at_least(0.0, open_=True), default=1.0,
                        help="with --rows-per-second: seconds between chunks")
    parser.add_argument("--quarantine", default=str(DEFAULT_QUARANTINE), help="where rejected rows go")
    parser.add_argument("--metrics", default=None, help="metrics file (default <quarantine>/_metrics.json)")
    parser.add_argument("--start-date", type=cli.iso_date, default=config.DEFAULT_START_DATE,
                        help="date of step 0 (one step per day)")
    args = parser.parse_args(argv)
    try:
        args.pace = replay.ReplayPace(args.rows_per_second, args.step_by_step, args.speedup, args.tick_seconds)
    except ValueError as err:
        parser.error(str(err))
    return args


def metrics_within(spark, quarantine: str, metrics: str | None) -> str | None:
    """Where the metrics file lies inside the quarantine folder (``_metrics.json`` by default); None when outside."""
    if metrics is None:
        return "_metrics.json"
    folder, path = qualified(spark, quarantine).rstrip("/"), qualified(spark, metrics)
    return path[len(folder) + 1:] if path.startswith(folder + "/") else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    spark = build_spark(APP_NAME)
    started = time.perf_counter()
    try:
        if not kafka.connector_available(spark):
            log.error("%s", kafka.MISSING_CONNECTOR)
            return 2
        problem = io.overlap(spark, {"--input": args.input},
                             {"--quarantine": args.quarantine, "--metrics": args.metrics})
        if problem:
            log.error("%s", problem)
            return 2
        columns = claims.csv_columns(spark, args.input, log)
        if columns is None:
            return 2
        # parse_lines' stages, with the validated lines cached: valid rows and quarantine come
        # from one parse of the file, not two.
        validated = validate(split_fields(io.read_lines(spark, args.input), columns), args.start_date).cache()
        prepared, quarantine = split_valid(validated)
        quarantine = quarantine.cache()
        # The quarantine (and its _metrics.json) of this replay replaces the earlier one only once
        # every message is sent: a replay Kafka refused leaves the earlier replay's record whole.
        try:
            with io.publishing(spark, args.quarantine) as staging:
                quarantine.write.mode("overwrite").json(staging)
                rows_quarantined = quarantine.count()
                messages = (
                    codec.to_kafka_messages(
                        replay.replay_order(prepared).withColumn("chunk", args.pace.chunk()))
                    .cache()
                )  # fmt: skip
                rows_valid = messages.count()
                to_send = messages if args.limit is None else messages.where(F.col("seq") <= args.limit)
                read_seconds = time.perf_counter() - started

                send_started = time.perf_counter()
                try:
                    sent = send_paced(to_send, args.bootstrap_servers, args.topic, args.pace)
                except Exception as err:  # noqa: BLE001  (the Kafka sink's errors come through py4j)
                    raise SendFailed(first_line(err)) from err
                send_seconds = time.perf_counter() - send_started
                seconds = {"read": read_seconds, "send": send_seconds, "elapsed": time.perf_counter() - started}
                metrics = replay_metrics(args, rows_valid, rows_quarantined, quarantine_reasons(quarantine), sent,
                                         seconds)
                inside = metrics_within(spark, args.quarantine, args.metrics)
                if inside is not None:
                    io.write_json(spark, f"{staging}/{inside}", metrics)
        except SendFailed as err:
            log.error("sending to %s at %s failed: %s (the earlier quarantine is kept)", args.topic,
                      args.bootstrap_servers, err)
            return 1
        if inside is None:
            io.write_json(spark, args.metrics, metrics)
        rows_sent, chunks, max_lag = sent
        log.info("rows_in=%d rows_sent=%d rows_quarantined=%d to %s in %.1f s (%d chunk(s), max lag %.2f s)",
                 metrics["rows_in"], rows_sent, rows_quarantined, args.topic, send_seconds, chunks, max_lag)
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(cli.run(main, log))
