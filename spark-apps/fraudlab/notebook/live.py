"""Reads of the live stream for the streaming notebook: its Cassandra tables and Kafka topics, as pandas frames.

Cassandra: :func:`connect_cassandra`, :func:`read_cassandra_table`,
:func:`latest_alerts` (cassandra-driver). Kafka: :func:`read_topic_tail`
(kafka-python) and :func:`decode_records`. Then :func:`per_minute_throughput`
of what was read.

May touch: Cassandra and Kafka, read only, through the lab's one session
builder (:func:`fraudlab.io.cassandra.connect`) and its one consumer helper
(:func:`fraudlab.io.kafka.consumer`); pandas. No Spark, no figures, no writes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from fraudlab.io import cassandra, kafka
from fraudlab.schemas import ALERT_TABLE_COLUMNS, ALERTS_TABLE

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- Cassandra


def connect_cassandra(hosts: Sequence[str], port: int, keyspace: str, timeout: float = 10.0):
    """A cassandra-driver ``Session`` on ``keyspace`` (:func:`fraudlab.io.cassandra.connect`);
    close it with ``session.cluster.shutdown()``."""
    return cassandra.connect(hosts, port, keyspace, timeout)


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain CQL identifier")
    return name


def _plain(value: Any) -> Any:
    """Driver types pandas cannot order (``cassandra.util.Date``) as their Python equivalent."""
    return value.date() if type(value).__name__ == "Date" and hasattr(value, "date") else value


def read_cassandra_table(session, table: str, columns: Sequence[str] | None = None, where: str | None = None,
                         parameters: Sequence[Any] | None = None, limit: int | None = None,
                         fetch_size: int = 1000) -> pd.DataFrame:
    """``SELECT columns FROM table [WHERE where] [LIMIT limit]`` as a pandas frame (all pages fetched).

    ``where`` is CQL with ``%s`` placeholders for ``parameters``; table and
    column names must be plain identifiers. A table read without a partition
    key in ``where`` is a full scan: give a ``limit``.
    """
    from cassandra.query import SimpleStatement

    selected = ", ".join(_check_identifier(c) for c in columns) if columns else "*"
    cql = f"SELECT {selected} FROM {_check_identifier(table)}"
    if where:
        cql += f" WHERE {where}"
    if limit is not None:
        cql += f" LIMIT {int(limit)}"
    result = session.execute(SimpleStatement(cql, fetch_size=fetch_size), parameters)
    names = list(result.column_names or columns or [])
    rows = [[_plain(v) for v in row] for row in result]
    return pd.DataFrame(rows, columns=names)


def latest_alerts(session, n: int = 20, table: str = ALERTS_TABLE) -> pd.DataFrame:
    """The ``n`` latest alerts: newest alert days first, newest event time first within a day.

    Follows the table's design (one partition per ``alert_date``, clustered by
    ``event_time`` descending): finds the days, then reads the newest ones until
    ``n`` rows are in. Columns come in the stream's order
    (:data:`fraudlab.schemas.ALERT_TABLE_COLUMNS`), not Cassandra's.
    """
    days = sorted((_plain(row[0]) for row in session.execute(f"SELECT DISTINCT alert_date FROM {_check_identifier(table)}")),
                  reverse=True)
    frames, remaining = [], int(n)
    for day in days:
        if remaining <= 0:
            break
        frame = read_cassandra_table(session, table, where="alert_date = %s", parameters=[day], limit=remaining)
        frames.append(frame)
        remaining -= len(frame)
    if frames:
        alerts = pd.concat(frames, ignore_index=True)
    else:
        # CQL has no LIMIT 0: the empty frame takes the table's columns from the schema metadata.
        alerts = pd.DataFrame(columns=list(session.cluster.metadata.keyspaces[session.keyspace].tables[table].columns))
    ordered = [c for c in ALERT_TABLE_COLUMNS if c in alerts.columns]
    return alerts[ordered + [c for c in alerts.columns if c not in ordered]]



# --------------------------------------------------------------------------- Kafka


def decode_records(records: Iterable[Any]) -> pd.DataFrame:
    """Kafka records as a table: ``kafka_partition``, ``kafka_offset``, ``kafka_timestamp`` (UTC), ``key``, then the value's fields.

    ``records`` carry ``partition``, ``offset``, ``timestamp`` (ms), ``key`` and
    ``value`` (bytes), like kafka-python's ``ConsumerRecord``. A JSON object
    value becomes one column per field; any other value stays whole in
    ``value``. Newest first.
    """
    rows = []
    for record in records:
        key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else record.key
        raw = record.value.decode("utf-8", "replace") if isinstance(record.value, bytes) else record.value
        try:
            payload = json.loads(raw) if raw is not None else None
        except json.JSONDecodeError:
            payload = None
        fields = payload if isinstance(payload, dict) else {"value": raw}
        rows.append({"kafka_partition": record.partition, "kafka_offset": record.offset,
                     "kafka_timestamp": record.timestamp, "key": key, **fields})
    # Columns in the order the fields first appear in the messages.
    columns = list(dict.fromkeys(["kafka_partition", "kafka_offset", "kafka_timestamp", "key",
                                  *(k for row in rows for k in row)]))
    frame = pd.DataFrame(rows, columns=columns)
    frame["kafka_timestamp"] = pd.to_datetime(frame["kafka_timestamp"], unit="ms", utc=True)
    return frame.sort_values(["kafka_timestamp", "kafka_partition", "kafka_offset"], ascending=False,
                             ignore_index=True)



def read_topic_tail(bootstrap_servers: str, topic: str, last_n: int = 100, timeout_s: float = 15.0) -> pd.DataFrame:
    """The last ``last_n`` committed records of every partition of ``topic``, decoded by :func:`decode_records`.

    Reads with a group-less consumer (nothing is committed, no other reader is
    disturbed, ``read_committed``) back from the end offsets seen at the start.
    The alerts topic is written in transactions, whose commit markers take
    offsets of their own, so ``end - last_n`` can hold fewer records: the read
    reaches further back until it has ``last_n`` or the partition's start.
    Raises ``ValueError`` when the topic does not exist.
    """
    from kafka import TopicPartition

    consumer = kafka.consumer(bootstrap_servers, allow_auto_create_topics=False,  # a mistyped topic must not be created
                              client_id="fraudlab-notebook", request_timeout_ms=int(timeout_s * 1000) + 5000)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap_servers}")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        begin, end = consumer.beginning_offsets(assigned), consumer.end_offsets(assigned)
        reach = {tp: int(last_n) for tp in assigned}
        records: dict[Any, list] = {tp: [] for tp in assigned}
        deadline = time.monotonic() + timeout_s
        todo = [tp for tp in assigned if end[tp] > begin[tp] and last_n > 0]
        while todo and time.monotonic() < deadline:
            for tp in todo:
                consumer.seek(tp, max(begin[tp], end[tp] - reach[tp]))
                records[tp] = []
            while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in todo):
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    if tp in todo:
                        records[tp].extend(r for r in batch if r.offset < end[tp])
            todo = [tp for tp in todo if len(records[tp]) < last_n and end[tp] - reach[tp] > begin[tp]]
            for tp in todo:
                reach[tp] *= 2
    finally:
        consumer.close()
    return decode_records(r for tp in assigned for r in records[tp][-int(last_n):] if last_n > 0)


# --------------------------------------------------------------------------- throughput


def per_minute_throughput(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows per minute of ``time_column`` (UTC; naive times are read as UTC), every minute of the span listed.

    Columns: ``minute`` and ``rows``; minutes without rows count 0, so gaps
    show. An empty input gives an empty frame.
    """
    times = pd.to_datetime(frame[time_column], utc=True).dropna() if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    if times.empty:
        return pd.DataFrame({"minute": pd.Series([], dtype="datetime64[ns, UTC]"), "rows": pd.Series([], dtype="int64")})
    minutes = times.dt.floor("min")
    counts = minutes.value_counts().sort_index()
    span = pd.date_range(minutes.min(), minutes.max(), freq="min")
    counts = counts.reindex(span, fill_value=0)
    return pd.DataFrame({"minute": span, "rows": counts.to_numpy(dtype="int64")})

