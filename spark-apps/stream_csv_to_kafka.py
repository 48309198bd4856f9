"""Replay a BankSim CSV into Kafka: each valid row as a JSON message, keyed by transaction_id, in event order.

Usage:
    spark-submit --jars "$(ls .lab/jars/spark-kafka/*.jar | paste -sd,)" spark-apps/stream_csv_to_kafka.py \
        --input data/raw/transactions.csv [--bootstrap-servers 127.0.0.1:9092] [--topic transactions] \
        [--limit N] [--rows-per-second N [--tick-seconds 1.0] | --step-by-step [--speedup 8640]] \
        [--quarantine data/stream/quarantine] [--metrics data/stream/quarantine/_metrics.json] \
        [--start-date 2024-01-01]

The CSV is read, parsed and validated exactly as ``prepare_data.py`` does
(``fraudlab.io.read_lines`` + the stages of ``fraudlab.parsing.parse_lines``), so a row gets the
same ``transaction_id`` on every run and in the batch pipeline. Rejected rows are
written to ``--quarantine`` (JSON lines with the raw line and the reasons) and
never sent. Valid rows are sorted by ``step`` (then ``transaction_id``);
``--limit N`` sends the first N of them. The value is the JSON of
``fraudlab.schemas.TRANSACTION_MESSAGE_SCHEMA``; Spark's Kafka sink writes it.

Pace: by default everything at once, as fast as the sink goes. ``--rows-per-second
N`` sends chunks of ``N * tick`` rows every ``--tick-seconds``. ``--step-by-step``
sends one step (one day of event time) at a time, compressed by ``--speedup``
(the default 8640 makes a day last 10 s). Each chunk is written by one task, so
every Kafka partition receives its rows in event order.

``_metrics.json`` (``--metrics``, default inside the quarantine folder) holds
``rows_in`` (data lines), ``rows_sent``, ``rows_quarantined``, the reasons, the
pace and the timings; the counts also go to the log.

Exit codes: 0 done; 1 Kafka refused the messages; 2 unusable input or flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pyspark.sql import functions as F

from fraudlab import config, io, streaming
from fraudlab.logs import configure_logging
from fraudlab.parsing import HeaderError, parse_header, split_fields, split_valid, validate
from fraudlab.session import build_spark

APP_NAME = "stream_csv_to_kafka"
log = logging.getLogger(APP_NAME)

DEFAULT_QUARANTINE = config.DATA_DIR / "stream" / "quarantine"
#: Seconds between progress lines of a paced replay.
PROGRESS_EVERY_S = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(config.RAW_CSV), help="BankSim CSV file or folder")
    parser.add_argument("--bootstrap-servers", default=config.KAFKA_BOOTSTRAP)
    parser.add_argument("--topic", default=config.TOPIC_TRANSACTIONS)
    parser.add_argument("--limit", type=int, default=None, help="send only the first N valid rows (by step)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rows-per-second", type=float, default=None, help="offered rate")
    pace.add_argument("--step-by-step", action="store_true", help="one step (a day) at a time, see --speedup")
    parser.add_argument("--speedup", type=float, default=8_640.0,
                        help="with --step-by-step: event time runs this many times faster than real time")
    parser.add_argument("--tick-seconds", type=float, default=1.0,
                        help="with --rows-per-second: seconds between chunks")
    parser.add_argument("--quarantine", default=str(DEFAULT_QUARANTINE), help="where rejected rows go")
    parser.add_argument("--metrics", default=None, help="metrics file (default <quarantine>/_metrics.json)")
    parser.add_argument("--start-date", default=config.DEFAULT_START_DATE, help="date of step 0 (one step per day)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error("--limit must be >= 0")
    try:
        args.pace = streaming.ReplayPace(args.rows_per_second, args.step_by_step, args.speedup, args.tick_seconds)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    spark = build_spark(APP_NAME)
    started = time.perf_counter()
    try:
        try:
            columns = parse_header(io.read_header(spark, args.input))
        except (HeaderError, ValueError) as err:
            log.error("cannot read %s: %s", args.input, err)
            return 2
        # parse_lines' stages, with the validated lines cached: valid rows and quarantine come
        # from one parse of the file, not two.
        validated = validate(split_fields(io.read_lines(spark, args.input), columns), args.start_date).cache()
        prepared, quarantine = split_valid(validated)
        quarantine = quarantine.cache()
        quarantine.write.mode("overwrite").json(args.quarantine)
        rows_quarantined = quarantine.count()

        messages = (
            streaming.to_kafka_messages(
                streaming.replay_order(prepared).withColumn("chunk", args.pace.chunk()))
            .cache()
        )  # fmt: skip
        rows_valid = messages.count()
        to_send = messages if args.limit is None else messages.where(F.col("seq") <= args.limit)
        read_seconds = time.perf_counter() - started

        send_started = time.perf_counter()
        try:
            rows_sent, chunks, max_lag = send(to_send, args)
        except Exception as err:  # noqa: BLE001  (the Kafka sink's errors come through py4j)
            log.error("sending to %s at %s failed: %s", args.topic, args.bootstrap_servers,
                      str(err).splitlines()[0])
            return 1
        send_seconds = time.perf_counter() - send_started

        metrics = {
            "input": args.input,
            "topic": args.topic,
            "bootstrap_servers": args.bootstrap_servers,
            "rows_in": rows_valid + rows_quarantined,
            "rows_sent": rows_sent,
            "rows_quarantined": rows_quarantined,
            "rows_held_back": rows_valid - rows_sent,
            "quarantine": args.quarantine,
            "quarantine_reasons": {
                row["reason"]: row["count"] for row in quarantine.groupBy("reason").count().collect()
            },
            "pace": {"rows_per_second": args.rows_per_second, "step_by_step": args.step_by_step,
                     "speedup": args.speedup if args.step_by_step else None,
                     "tick_seconds": args.tick_seconds if args.rows_per_second else None},
            "chunks": chunks,
            "max_lag_seconds": round(max_lag, 3),
            "read_seconds": round(read_seconds, 3),
            "send_seconds": round(send_seconds, 3),
            "elapsed_seconds": round(time.perf_counter() - started, 3),
            "rows_per_second_sent": round(rows_sent / send_seconds, 1) if send_seconds > 0 else None,
        }
        io.write_json(spark, args.metrics or f"{args.quarantine.rstrip('/')}/_metrics.json", metrics)
        log.info("rows_in=%d rows_sent=%d rows_quarantined=%d to %s in %.1f s (%d chunk(s), max lag %.2f s)",
                 metrics["rows_in"], rows_sent, rows_quarantined, args.topic, send_seconds, chunks, max_lag)
        return 0
    finally:
        spark.stop()


def send(messages, args) -> tuple[int, int, float]:
    """Write the messages chunk by chunk on the pace's schedule. Returns ``(rows, chunks, max lag in s)``."""

    def write(frame) -> None:
        # One partition: the rows leave in the order replay_order gave them.
        (frame.coalesce(1).select("key", "value").write.format("kafka")
         .option("kafka.bootstrap.servers", args.bootstrap_servers).option("topic", args.topic).save())

    if not args.pace.paced:
        rows = messages.count()
        write(messages)
        return rows, 1, 0.0
    counts = sorted((r["chunk"], r["count"]) for r in messages.groupBy("chunk").count().collect())
    if not counts:
        return 0, 0, 0.0
    first = counts[0][0]
    start = time.monotonic()
    max_lag, sent, last_report = 0.0, 0, start
    for chunk, count in counts:
        due = start + args.pace.due_seconds(chunk, first)
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            max_lag = max(max_lag, now - due)
        write(messages.where(F.col("chunk") == chunk))
        sent += count
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            log.info("sent %d rows in %.0f s (chunk %d of %d)", sent, last_report - start, chunk - first + 1,
                     counts[-1][0] - first + 1)
    return sent, len(counts), max_lag


if __name__ == "__main__":
    sys.exit(main())
