"""The replay of ``stream_csv_to_kafka.py``: messages to Kafka on a :class:`fraudlab.streaming.ReplayPace`.

:func:`send_paced` writes chunk after chunk with Spark's Kafka sink, sleeping until each is due;
:func:`replay_metrics` is the layout of the replay's ``_metrics.json``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fraudlab.streaming import ReplayPace

#: The app's logger: the replay's progress lines read "stream_csv_to_kafka: ...".
log = logging.getLogger("stream_csv_to_kafka")

#: Seconds between progress lines of a paced replay.
PROGRESS_EVERY_S = 10.0


def send_paced(messages: DataFrame, bootstrap_servers: str, topic: str, pace: ReplayPace) -> tuple[int, int, float]:
    """Write the messages chunk by chunk on the pace's schedule. Returns ``(rows, chunks, max lag in s)``."""

    def write(frame: DataFrame) -> None:
        # One partition: the rows leave in the order replay_order gave them.
        (frame.coalesce(1).select("key", "value").write.format("kafka")
         .option("kafka.bootstrap.servers", bootstrap_servers).option("topic", topic).save())

    if not pace.paced:
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
        due = start + pace.due_seconds(chunk, first)
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


def replay_metrics(args: Any, rows_valid: int, rows_quarantined: int, reasons: dict[str, int],
                   sent: tuple[int, int, float], seconds: dict[str, float]) -> dict[str, Any]:
    """``_metrics.json`` of a replay: ``args`` holds the app's flags, ``sent`` what :func:`send_paced` returned,
    ``seconds`` the ``read``, ``send`` and ``elapsed`` timings."""
    rows_sent, chunks, max_lag = sent
    send_seconds = seconds["send"]
    return {
        "input": args.input,
        "topic": args.topic,
        "bootstrap_servers": args.bootstrap_servers,
        "rows_in": rows_valid + rows_quarantined,
        "rows_sent": rows_sent,
        "rows_quarantined": rows_quarantined,
        "rows_held_back": rows_valid - rows_sent,
        "quarantine": args.quarantine,
        "quarantine_reasons": reasons,
        "pace": {"rows_per_second": args.rows_per_second, "step_by_step": args.step_by_step,
                 "speedup": args.speedup if args.step_by_step else None,
                 "tick_seconds": args.tick_seconds if args.rows_per_second else None},
        "chunks": chunks,
        "max_lag_seconds": round(max_lag, 3),
        "read_seconds": round(seconds["read"], 3),
        "send_seconds": round(send_seconds, 3),
        "elapsed_seconds": round(seconds["elapsed"], 3),
        "rows_per_second_sent": round(rows_sent / send_seconds, 1) if send_seconds > 0 else None,
    }
