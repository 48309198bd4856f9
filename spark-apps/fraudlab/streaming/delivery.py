"""Alerts and dead letters delivered exactly once: one Kafka transaction per micro-batch.

The classifier's Kafka output is a transactional producer (kafka-python) on the driver. Its
``transactional.id`` is named after the query's id, which Spark keeps in the checkpoint, so a
restarted classifier is the same producer: ``init_transactions`` fences the run it replaces and
aborts whatever that run left open. A batch's alerts and dead letters go out in one transaction
that also commits, for a consumer group of the same name, the batch's end offsets of the input
topic with the batch id as their metadata (``send_offsets_to_transaction``). The messages and the
record of the batch they belong to become visible together, or not at all.

At start the group's committed metadata says which batch was delivered last
(:func:`last_delivered_batch`). Spark re-runs a batch it had not committed when the classifier
died (same id, same offsets, from its offset log): the batch is written to Cassandra again (the
upserts are idempotent), and its messages are not sent again when its id is already delivered.
So a consumer reading the alerts topic with ``isolation.level=read_committed`` sees each alert and
dead letter once, wherever the classifier was killed. A consumer reading uncommitted records can
also see those of an aborted transaction.

:func:`fraudlab.failpoints.failpoint` is the tests' way to kill the classifier at an exact point of a batch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fraudlab.io import kafka

log = logging.getLogger("classify_stream")

def ledger_name(query_id: str) -> str:
    """The transactional id and the consumer group of a query's output."""
    return f"classify_stream-{query_id}"


def last_delivered_batch(bootstrap_servers: str, group: str, timeout_s: float = 60.0) -> int:
    """The id of the last batch whose messages ``group``'s transactions committed; -1 when none did.

    Kafka's retriable answers are retried for up to ``timeout_s`` (a new broker creates its offsets
    topic on the first group look-up, and answers "coordinator not available" until it has).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=f"{group}-ledger")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                committed = admin.list_group_offsets(group).get(group, {})
                break
            except KafkaError as err:
                if not getattr(err, "retriable", False) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    batches = [-1]
    for offset in committed.values():
        try:
            batches.append(int(json.loads(offset.metadata)["batch_id"]))
        except (TypeError, ValueError, KeyError):
            continue  # not a record of ours
    return max(batches)


class TransactionalOutput:
    """The classifier's Kafka output: each batch's messages in one transaction, each batch once.

    ``producer_options`` go to kafka-python's ``KafkaProducer`` (security settings, say).
    """

    def __init__(self, bootstrap_servers: str, query_id: str, **producer_options: Any) -> None:
        from kafka import KafkaProducer

        kafka.quiet_client_logs()
        self.name = ledger_name(query_id)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=self.name,
                                      acks="all", linger_ms=5, **producer_options)
        self.producer.init_transactions()  # fences an earlier run of this query, aborts what it left open
        self.delivered = last_delivered_batch(bootstrap_servers, self.name)
        log.info("Kafka output %s: last delivered batch %d", self.name, self.delivered)

    def deliver(self, batch_id: int, messages: Sequence[tuple[str, bytes | None, bytes | None]],
                source_offsets: Mapping[tuple[str, int], int]) -> int:
        """Send ``messages`` (``(topic, key, value)``) in one transaction that records ``batch_id``.

        ``source_offsets`` (``{(topic, partition): next offset}``) are the batch's input ends, committed
        with it. Returns how many messages were sent: 0 for a batch already delivered (replayed after
        a crash) or without messages.
        """
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        if batch_id <= self.delivered:
            log.info("batch %d: its %d Kafka messages were delivered before the restart: not sent again",
                     batch_id, len(messages))
            return 0
        if not messages:
            return 0
        record = json.dumps({"batch_id": batch_id})
        self.producer.begin_transaction()
        try:
            for topic, key, value in messages:
                self.producer.send(topic, key=key, value=value)
            self.producer.send_offsets_to_transaction(
                {TopicPartition(topic, partition): OffsetAndMetadata(offset, record, -1)
                 for (topic, partition), offset in source_offsets.items()}, self.name)
            self.producer.commit_transaction()
        except Exception:
            self._abort()
            raise
        self.delivered = batch_id
        return len(messages)

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction()
        except Exception as err:  # noqa: BLE001 - fenced or broken: the next run's init_transactions aborts it
            log.warning("could not abort the Kafka transaction: %s", err)

    def close(self) -> None:
        """Flush and close the producer (an open transaction was committed or aborted by :meth:`deliver`)."""
        try:
            self.producer.close(timeout=10)
        except Exception as err:  # noqa: BLE001 - closing at exit: the next run's init_transactions fences it
            log.warning("could not close the Kafka producer: %s", err)
