"""The replay of ``stream_csv_to_kafka.py``: rows in event order, sent to Kafka on a :class:`ReplayPace`.

:func:`replay_order` numbers the rows in event order, :class:`ReplayPace` cuts them into timed chunks,
:func:`send_paced` writes chunk after chunk with Spark's Kafka sink, sleeping until each is due;
:func:`replay_metrics` is the layout of the replay's ``_metrics.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

#: The app's logger: the replay's progress lines read "stream_csv_to_kafka: ...".
log = logging.getLogger("stream_csv_to_kafka")

#: Seconds between progress lines of a paced replay.
PROGRESS_EVERY_S = 10.0

#: One step of BankSim is one day of event time.
SECONDS_PER_STEP = 86_400.0


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
