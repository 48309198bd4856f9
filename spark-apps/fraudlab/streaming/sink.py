"""Cassandra I/O of the stream classifier: write every scored transaction, read the customer history.

Spark 4 has no Cassandra connector, so the stream writes with ``cassandra-driver``
inside ``foreachBatch``: prepared statements run by ``execute_concurrent``
(``concurrency`` requests in flight), a customer's ``customer_history`` and
``scored_transactions`` rows in one ``UNLOGGED`` batch (both tables are partitioned
by customer: one mutation of one partition) and a day's alerts in another, so a
chunk of rows is one round of about one request per customer; timeouts and unavailable-node errors retried
with exponential backoff for up to ``retry_seconds``, then
:class:`CassandraSinkError`, which fails the micro-batch and the query: a row is never dropped silently. Every statement is an idempotent upsert
(``INSERT`` of whole rows keyed by ``transaction_id``; a ``list`` column is
replaced, not appended to), so retrying a statement or replaying a batch writes
the same rows again.

**Where the writes run: on the driver**, which already holds the micro-batch's
scored rows (:mod:`fraudlab.streaming.batch` collects them once, as Arrow): a
batch of a few thousand rows is a few hundred requests in flight on one session,
and no Spark job, no task and no Python worker is started for it. Before, each
partition was written from its executor's Python worker (``mapInArrow``), which
cost a Spark job per batch: the floor of a micro-batch is the number of its jobs,
not its rows. A stream of far more rows per batch than a driver should hold wants
more partitions of the source and more queries, not bigger batches.

**The history lookup runs on the driver too**: a micro-batch's customers are looked
up with a handful of ``IN`` queries (one per 100 customers that share the same
step bounds), and the few rows that come back become a small local DataFrame
(built from Arrow, no Spark job).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame

from fraudlab import config, schemas
from fraudlab.io import cassandra

log = logging.getLogger(__name__)


class CassandraSinkError(RuntimeError):
    """Statements still failed when the retry budget ran out, or failed in a way a retry cannot fix."""


@dataclass(frozen=True)
class CassandraSettings:
    """Where Cassandra is and how hard to try. Pickled into the Spark tasks."""

    hosts: tuple[str, ...] = (config.CASSANDRA_HOST,)
    port: int = config.CASSANDRA_PORT
    keyspace: str = config.CASSANDRA_KEYSPACE
    #: Requests in flight per Python worker.
    concurrency: int = 48
    #: Seconds before one request counts as timed out.
    request_timeout_s: float = 10.0
    #: Total seconds a statement set keeps being retried before the batch fails.
    retry_seconds: float = 60.0
    first_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    #: Rows written per round of concurrent requests (latency is measured per round).
    chunk_rows: int = 2000
    #: Most statements in one unlogged batch (all on one partition key: a customer's history and
    #: scored rows, or one day's alerts); well under Cassandra's batch size thresholds.
    statements_per_batch: int = 16

    def table(self, name: str) -> str:
        return f"{self.keyspace}.{name}"


@dataclass
class WriteSummary:
    """What one write of a batch did: rows, alerts, and each row's latency from its Kafka timestamp."""

    rows: int = 0
    alerts: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def merge(self, part: dict[str, Any]) -> None:
        self.rows += part["rows"]
        self.alerts += part["alerts"]
        self.retries += part["retries"]
        self.latencies_ms.extend(part["latencies_ms"])


# --------------------------------------------------------------------------- statements


def insert_cql(settings: CassandraSettings, table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO keyspace.table (c1, ...) VALUES (?, ...)``: an upsert of the whole row."""
    return (f"INSERT INTO {settings.table(table)} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


def history_sum_cql(settings: CassandraSettings) -> str:
    """Per customer of a list: count and sum of the stored amounts before a step (server-side aggregates)."""
    return (f"SELECT customer, count(amount), sum(amount) FROM {settings.table(schemas.HISTORY_TABLE)} "
            "WHERE customer IN ? AND step < ? GROUP BY customer")


def history_rows_cql(settings: CassandraSettings) -> str:
    """The stored rows of a list of customers from one step to another, both included."""
    return (f"SELECT customer, step, transaction_id, merchant, amount FROM {settings.table(schemas.HISTORY_TABLE)} "
            "WHERE customer IN ? AND step >= ? AND step <= ?")


#: Customers per IN query of the history lookup.
CUSTOMERS_PER_QUERY = 100


# --------------------------------------------------------------------------- sessions and retries

#: One driver session per (hosts, port, timeout) in the process: opened by the first batch, kept for the next.
_sessions: dict[tuple, Any] = {}
_prepared: dict[tuple, Any] = {}
_lock = threading.Lock()


def session_for(settings: CassandraSettings):
    """This process's cached driver session for ``settings`` (connecting on first use)."""
    from cassandra.policies import ExponentialReconnectionPolicy

    key = (settings.hosts, settings.port, settings.request_timeout_s)
    with _lock:
        session = _sessions.get(key)
        if session is not None and not session.is_shutdown:
            return session
        session = cassandra.connect(
            settings.hosts, settings.port, timeout=settings.request_timeout_s,
            # A node that comes back is found within seconds, not the default's minutes.
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
            schema_metadata_enabled=False,  # prepared statements need no schema model
        )
        _sessions[key] = session
        return session


def _prepare(session, cql: str):
    key = (id(session), cql)
    statement = _prepared.get(key)
    if statement is None:
        statement = session.prepare(cql)
        statement.is_idempotent = True  # upserts and reads: safe to run twice
        _prepared[key] = statement
    return statement


def is_retryable(error: BaseException) -> bool:
    """Timeouts, unavailable or unreachable nodes: yes. Bad statements or values: no."""
    from cassandra import RequestValidationException

    return not isinstance(error, (RequestValidationException, TypeError, ValueError, KeyError))


def run_statements(
    settings: CassandraSettings,
    cql: str,
    parameters: Sequence[Sequence[Any]],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    session_factory: Callable[[CassandraSettings], Any] = session_for,
) -> tuple[list[Any], int]:
    """Run ``cql`` once per parameter tuple, concurrently; retry what failed. Returns ``(results, retries)``.

    Failed statements (and a failed connect or prepare) are retried with
    exponential backoff from ``first_backoff_s`` to ``max_backoff_s`` until
    ``retry_seconds`` have passed; then, or at once for an error a retry cannot
    fix, :class:`CassandraSinkError` is raised.
    """
    return run_groups(settings, [[(cql, params)] for params in parameters], what, sleep, session_factory)


def run_groups(
    settings: CassandraSettings,
    groups: Sequence[Sequence[tuple[str, Sequence[Any]]]],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    session_factory: Callable[[CassandraSettings], Any] = session_for,
) -> tuple[list[Any], int]:
    """Run each group of ``(cql, parameters)`` as one request, all groups concurrently; retry what failed.

    A group of one statement is sent as that statement; a larger group as one
    ``UNLOGGED`` batch (its statements should share a partition key: the batch is
    then one mutation on one replica set). Every statement is an idempotent
    upsert or a read, so a retried group writes the same rows again. Returns
    ``(results, retries)`` as :func:`run_statements` does (a batch's result is empty).
    """
    from cassandra.concurrent import execute_concurrent

    results: list[Any] = [None] * len(groups)
    pending = list(range(len(groups)))
    deadline = time.monotonic() + settings.retry_seconds
    attempt = 0
    while pending:
        failures: list[tuple[int, BaseException]] = []
        try:
            session = session_factory(settings)
            requests = [(_request(session, groups[i]), None) for i in pending]
            outcomes = execute_concurrent(
                session, requests, concurrency=settings.concurrency, raise_on_first_error=False,
                results_generator=False,
            )  # fmt: skip
            for index, (ok, result) in zip(pending, outcomes):
                if ok:
                    results[index] = result
                else:
                    failures.append((index, result))
        except Exception as exc:  # noqa: BLE001 - connect/prepare failures count for every statement
            failures = [(index, exc) for index in pending]
        fatal = next((exc for _, exc in failures if not is_retryable(exc)), None)
        if fatal is not None:
            raise CassandraSinkError(f"{what}: {fatal!r} (not retryable)") from fatal
        if not failures:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            first = failures[0][1]
            raise CassandraSinkError(
                f"{what}: {len(failures)} of {len(groups)} requests still failing after "
                f"{attempt + 1} attempts in {settings.retry_seconds:.0f} s; last error {first!r}"
            ) from first
        backoff = min(settings.max_backoff_s, settings.first_backoff_s * 2**attempt, remaining)
        log.warning("%s: %d of %d requests failed (%r), retry %d in %.1f s",
                    what, len(failures), len(groups), failures[0][1], attempt + 1, backoff)
        sleep(backoff)
        attempt += 1
        pending = [index for index, _ in failures]
    return results, attempt


def _request(session, group: Sequence[tuple[str, Sequence[Any]]]):
    """One bound statement, or an idempotent ``UNLOGGED`` batch of them."""
    from cassandra.query import BatchStatement, BatchType

    if len(group) == 1:
        cql, params = group[0]
        return _prepare(session, cql).bind(params)
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for cql, params in group:
        batch.add(_prepare(session, cql), params)
    batch.is_idempotent = True  # upserts only
    return batch


# --------------------------------------------------------------------------- writes


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for first in range(0, len(rows), max(1, size)):
        yield rows[first:first + size]


def write_groups(rows: Sequence[dict[str, Any]], settings: CassandraSettings) -> list[list[tuple[str, tuple]]]:
    """The requests that write ``rows`` (of :func:`fraudlab.streaming.alerts.cassandra_rows`): statement groups.

    One group per customer with its ``customer_history`` and ``scored_transactions``
    upserts (both tables are partitioned by customer), one per alert day with its
    ``alerts_by_day`` upserts; a group holds at most ``statements_per_batch``.
    """
    history_cql = insert_cql(settings, schemas.HISTORY_TABLE, schemas.HISTORY_TABLE_COLUMNS)
    scored_cql = insert_cql(settings, schemas.SCORED_TABLE, schemas.SCORED_TABLE_COLUMNS)
    alerts_cql = insert_cql(settings, schemas.ALERTS_TABLE, schemas.ALERT_TABLE_COLUMNS)
    by_customer: dict[Any, list[tuple[str, tuple]]] = {}
    by_day: dict[Any, list[tuple[str, tuple]]] = {}
    for row in rows:
        statements = by_customer.setdefault(row["customer"], [])
        statements.append((history_cql, tuple(row[c] for c in schemas.HISTORY_TABLE_COLUMNS)))
        statements.append((scored_cql, tuple(row[c] for c in schemas.SCORED_TABLE_COLUMNS)))
        if row["is_alert"]:
            by_day.setdefault(row["alert_date"], []).append(
                (alerts_cql, tuple(row[c] for c in schemas.ALERT_TABLE_COLUMNS)))
    size = max(1, settings.statements_per_batch)
    return [statements[i:i + size] for grouped in (by_customer, by_day) for statements in grouped.values()
            for i in range(0, len(statements), size)]


def digest_groups(digests: dict[str, tuple[str, str]],
                  settings: CassandraSettings) -> list[list[tuple[str, tuple]]]:
    """One request per new transaction id: its content digest and first position (``transaction_digests``)."""
    cql = insert_cql(settings, schemas.DIGESTS_TABLE, ("transaction_id", "digest", "first_seen"))
    return [[(cql, (tid, found, first))] for tid, (found, first) in digests.items()]


def read_digests(ids: Sequence[str], settings: CassandraSettings) -> dict[str, tuple[str, str]]:
    """``{transaction_id: (digest, first_seen)}`` of those of ``ids`` the stream has stored.

    Asked :data:`CUSTOMERS_PER_QUERY` ids per ``IN`` query (a handful of requests per batch; on a
    cluster of many nodes, one point read per id would spread the load better).
    """
    unique = sorted(set(ids))
    if not unique:
        return {}
    cql = (f"SELECT transaction_id, digest, first_seen FROM {settings.table(schemas.DIGESTS_TABLE)} "
           "WHERE transaction_id IN ?")
    params = [(unique[i:i + CUSTOMERS_PER_QUERY],) for i in range(0, len(unique), CUSTOMERS_PER_QUERY)]
    results, _ = run_statements(settings, cql, params, f"read the digests of {len(unique)} transaction ids")
    return {row[0]: (row[1], row[2]) for result in results for row in result}


def write_rows(rows: Sequence[dict[str, Any]], settings: CassandraSettings,
               digests: dict[str, tuple[str, str]] | None = None) -> WriteSummary:
    """Write rows of :func:`fraudlab.streaming.alerts.cassandra_rows` to the three tables, and the content
    ``digests`` of their new transaction ids (:mod:`fraudlab.streaming.duplicates`); raise on failure.

    Each chunk of ``chunk_rows`` rows is one round of concurrent requests
    (:func:`write_groups`: an unlogged batch per customer for ``customer_history``
    and ``scored_transactions``, one per alert day for ``alerts_by_day``); a row's
    latency is the round's completion time minus the row's Kafka timestamp.
    """
    summary = WriteSummary()
    digests = digests or {}
    for chunk in _chunks(rows, settings.chunk_rows):
        # Each kept message is one row, so a new id's digest goes out in the round of its row.
        groups = write_groups(chunk, settings) + digest_groups(
            {row["transaction_id"]: digests[row["transaction_id"]] for row in chunk
             if row["transaction_id"] in digests}, settings)
        _, retries = run_groups(settings, groups, f"write {len(chunk)} rows ({len(groups)} requests) to "
                                                  f"{settings.keyspace}")
        done_ms = time.time() * 1000.0
        summary.merge({
            "rows": len(chunk), "alerts": sum(1 for row in chunk if row["is_alert"]), "retries": retries,
            "latencies_ms": [done_ms - row["kafka_timestamp_ms"] for row in chunk
                             if row["kafka_timestamp_ms"] is not None]})
    return summary


def fetch_history(requests: Sequence[Any], settings: CassandraSettings) -> list[tuple]:
    """Rows of :data:`fraudlab.schemas.STORED_HISTORY_SCHEMA` for :func:`fraudlab.streaming.history.history_requests` rows.

    Customers sharing the same step bounds are asked together, up to
    :data:`CUSTOMERS_PER_QUERY` per query: one aggregate for the count and sum
    before ``context_from_step``, one range read for the rows from there to
    ``context_to_step``.
    """
    sums: dict[int, list[str]] = {}
    ranges: dict[tuple[int, int], list[str]] = {}
    for r in requests:
        sums.setdefault(int(r["context_from_step"]), []).append(r["customer"])
        ranges.setdefault((int(r["context_from_step"]), int(r["context_to_step"])), []).append(r["customer"])
    sum_params = [(customers[i:i + CUSTOMERS_PER_QUERY], first)
                  for first, customers in sums.items() for i in range(0, len(customers), CUSTOMERS_PER_QUERY)]
    range_params = [(customers[i:i + CUSTOMERS_PER_QUERY], first, last)
                    for (first, last), customers in ranges.items()
                    for i in range(0, len(customers), CUSTOMERS_PER_QUERY)]
    if not sum_params:
        return []
    sum_results, _ = run_statements(settings, history_sum_cql(settings), sum_params,
                                    f"read history sums of {len(requests)} customers")
    range_results, _ = run_statements(settings, history_rows_cql(settings), range_params,
                                      f"read history rows of {len(requests)} customers")
    out: list[tuple] = []
    for (_, first), result in zip(sum_params, sum_results):
        for customer, count, amount_sum in result:
            if count:
                out.append((customer, first - 1, None, None, None, int(count), float(amount_sum)))
    for result in range_results:
        out.extend((row.customer, row.step, row.transaction_id, row.merchant, row.amount, 1, row.amount)
                   for row in result)
    return out


# --------------------------------------------------------------------------- the checkpoint's stamp

#: Columns of ``stream_checkpoints`` (:mod:`fraudlab.streaming.checkpoint`).
CHECKPOINT_STAMP_COLUMNS = ("checkpoint", "query_id", "topic", "started_at")


def stamp_checkpoint(settings: CassandraSettings, checkpoint: str, query_id: str, topic: str) -> None:
    """Record that the folder ``checkpoint`` holds query ``query_id``'s progress over ``topic`` (an upsert)."""
    run_statements(settings, insert_cql(settings, schemas.CHECKPOINTS_TABLE, CHECKPOINT_STAMP_COLUMNS),
                   [(checkpoint, query_id, topic, dt.datetime.now(dt.timezone.utc))],
                   f"stamp checkpoint {checkpoint} in {settings.keyspace}")


def checkpoint_stamp(settings: CassandraSettings, checkpoint: str) -> dict[str, Any] | None:
    """The keyspace's record of the folder ``checkpoint`` (:func:`stamp_checkpoint`), None when it has none."""
    cql = (f"SELECT {', '.join(CHECKPOINT_STAMP_COLUMNS)} FROM {settings.table(schemas.CHECKPOINTS_TABLE)} "
           "WHERE checkpoint = ?")
    results, _ = run_statements(settings, cql, [(checkpoint,)], f"read the stamp of checkpoint {checkpoint}")
    rows = list(results[0])
    return dict(zip(CHECKPOINT_STAMP_COLUMNS, rows[0])) if rows else None


# --------------------------------------------------------------------------- reads


def read_history(spark, requests: Sequence[Any], settings: CassandraSettings) -> DataFrame:
    """The stored history for :func:`fraudlab.streaming.history.history_requests` as a small local DataFrame
    of :data:`fraudlab.schemas.STORED_HISTORY_SCHEMA` (built from Arrow: no Spark job)."""
    import pyarrow as pa

    rows = fetch_history(requests, settings)
    names = schemas.STORED_HISTORY_SCHEMA.fieldNames()
    types = [pa.string(), pa.int32(), pa.string(), pa.string(), pa.float64(), pa.int64(), pa.float64()]
    table = pa.table({name: pa.array([row[i] for row in rows], type=types[i]) for i, name in enumerate(names)})
    return spark.createDataFrame(table, schema=schemas.STORED_HISTORY_SCHEMA)
