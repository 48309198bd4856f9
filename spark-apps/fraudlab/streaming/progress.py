"""Watching a running query: per-batch progress lines (and JSON lines), latency percentiles, and a graceful
stop on a signal."""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql.streaming.listener import StreamingQueryListener

from fraudlab.logs import first_line

#: The app's logger: the query's lines read "classify_stream: ..." as the app's own.
log = logging.getLogger("classify_stream")


class ProgressLog(StreamingQueryListener):
    """Logs each batch: rows, rows per second, duration, and the sink's latency figures.

    The JSON line of a batch also holds Spark's ``durationMs`` (``duration_ms``) and, from the batch
    function, the milliseconds of each of its steps (``stages_ms``).
    """

    def __init__(self, batch_figures: dict[int, dict], progress_file: str | None) -> None:
        self.batch_figures = batch_figures
        self.progress_file = Path(progress_file) if progress_file else None
        self.terminated = threading.Event()
        #: Set with :attr:`terminated` when the query ended on an error (which this listener logged).
        self.failed = False

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
            # Where the trigger's time went, as Spark reports it: addBatch (the foreachBatch function),
            # queryPlanning, walCommit, latestOffset, getBatch, commitOffsets, triggerExecution (the whole).
            "duration_ms": {name: int(ms) for name, ms in (progress.durationMs or {}).items()},
            **self.batch_figures.pop(progress.batchId, {}),
        }
        log.info(
            "batch %d: %d rows in %s ms (%.0f rows/s processed), %s written, %s alerts, %s dead letters, "
            "latency p50 %s ms p99 %s ms; durations %s; steps %s",
            progress.batchId, progress.numInputRows, figures["batch_ms"], progress.processedRowsPerSecond or 0.0,
            figures.get("rows_written", 0), figures.get("alerts", 0), figures.get("dead_letters", 0),
            _ms(figures.get("latency_p50_ms")), _ms(figures.get("latency_p99_ms")),
            _pairs(figures["duration_ms"]), _pairs(figures.get("stages_ms") or {}),
        )  # fmt: skip
        if self.progress_file is not None:
            with self.progress_file.open("a") as out:
                out.write(json.dumps(figures, default=str) + "\n")

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        if event.exception:
            self.failed = True
            log.error("query %s failed: %s", event.id, explain(event.exception.splitlines()[0]))
        else:
            log.info("query %s stopped", event.id)
        self.terminated.set()


#: What a failure of the query means, for the errors whose own words do not say it.
HINTS = {
    "Some data may have been lost because they are not available in Kafka any more":
        "the checkpoint's offsets are gone from the topic: it was deleted and created again, or its retention "
        "removed messages not yet classified. If it was recreated, start over: delete the checkpoint folder "
        "and its row in the keyspace's stream_checkpoints table (dags/fraud_streaming.md)",
}


def explain(message: str) -> str:
    """``message`` with the lab's hint appended when :data:`HINTS` knows the error."""
    hints = [hint for words, hint in HINTS.items() if words in message]
    return " ".join([message, *(f"[{hint}]" for hint in hints)])


def _pairs(durations: dict[str, int]) -> str:
    return " ".join(f"{name}={ms}" for name, ms in durations.items()) or "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


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
        listener.terminated.wait(10)
        if not listener.failed:  # the listener said why, with the query's id: one line is enough
            log.error("query failed: %s", explain(first_line(err)))
        return 1
    listener.terminated.wait(10)  # let the listener log the last batch before the session stops
    return 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank; ``None`` for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must lie in [0, 100]")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[rank - 1])
