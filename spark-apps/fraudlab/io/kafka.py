"""The one way the lab opens a plain Kafka consumer (kafka-python), the reads built on it, and the check
that Spark's own Kafka connector is on the classpath.

A group-less consumer that commits nothing, so it never disturbs another reader: the streaming
DAG's check, the notebooks and the benchmark read topics through :func:`consumer`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

#: The class behind ``format("kafka")``: in the spark-sql-kafka jar, not in Spark's own jars.
CONNECTOR_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"

#: What the streaming apps say, and exit 2 on, when the connector is missing.
MISSING_CONNECTOR = ("Spark's Kafka connector is not on the classpath: pass --jars with the spark-sql-kafka jars "
                     "and their dependencies (.lab/jars/spark-kafka/*.jar, fetched by make services-fetch)")


def connector_available(spark) -> bool:
    """True when the driver can load :data:`CONNECTOR_CLASS` (asked before any work, so a missing
    ``--jars`` is one sentence rather than a Spark stack trace half-way through the run)."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName(CONNECTOR_CLASS, False, jvm.java.lang.Thread.currentThread().getContextClassLoader())
    except Py4JJavaError:
        return False
    return True


#: How long :func:`read_range` waits for Kafka to hand back the messages asked for.
READ_TIMEOUT_S = 300


def quiet_client_logs() -> None:
    """kafka-python logs every connection at INFO: keep only its warnings."""
    logging.getLogger("kafka").setLevel(logging.WARNING)


def consumer(bootstrap_servers: str, **options: Any):
    """A ``KafkaConsumer`` with no group and no auto-commit, reading committed records only; ``options`` go
    to it as they are.

    ``read_committed``: the classifier writes alerts and dead letters in transactions
    (:mod:`fraudlab.streaming.delivery`), and an aborted one's records are not alerts.
    """
    from kafka import KafkaConsumer

    quiet_client_logs()
    options = {"isolation_level": "read_committed", **options}
    return KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, **options)


def end_offsets(bootstrap: str, topic: str, client_id: str) -> dict[str, int]:
    """``{partition: end offset}`` of ``topic`` now; ``{}`` when the topic does not exist yet."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    try:
        reader = consumer(bootstrap, client_id=client_id, request_timeout_ms=30_000)
    except KafkaError as err:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap from ..."
        raise RuntimeError(f"Kafka at {bootstrap} is not reachable: {err}") from err
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])]
        if not partitions:
            return {}
        return {str(tp.partition): int(offset) for tp, offset in reader.end_offsets(partitions).items()}
    finally:
        reader.close()


def read_range(bootstrap: str, topic: str, start: dict[str, int], end: dict[str, int], client_id: str,
               timeout_s: float = READ_TIMEOUT_S) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of every message of ``topic`` in ``[start, end)``, per partition.

    A partition missing from ``start`` (the topic was created by the replay) starts at its first offset.
    """
    from kafka import TopicPartition

    reader = consumer(bootstrap, client_id=client_id, request_timeout_ms=30_000,
                      max_partition_fetch_bytes=4 * 2**20)
    try:
        wanted = {TopicPartition(topic, int(p)): int(stop) for p, stop in end.items()}
        first = reader.beginning_offsets(list(wanted))
        bounds = {tp: (max(int(start.get(str(tp.partition), 0)), first[tp]), stop) for tp, stop in wanted.items()}
        bounds = {tp: (lo, hi) for tp, (lo, hi) in bounds.items() if lo < hi}
        if not bounds:
            return []
        reader.assign(list(bounds))
        for tp, (lo, _) in bounds.items():
            reader.seek(tp, lo)
        records: list[tuple[int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while any(reader.position(tp) < hi for tp, (_, hi) in bounds.items()):
            if time.monotonic() > deadline:
                behind = {tp.partition: (reader.position(tp), hi) for tp, (_, hi) in bounds.items()}
                raise RuntimeError(f"Kafka did not hand back the run's messages of {topic} within {timeout_s:.0f} s "
                                   f"(partition: (position, end)) {behind}")
            for tp, batch in reader.poll(timeout_ms=1000).items():
                hi = bounds[tp][1]
                records.extend((tp.partition, r.offset, r.key, r.value) for r in batch if r.offset < hi)
        return records
    finally:
        reader.close()
