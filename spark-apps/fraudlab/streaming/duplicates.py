"""Messages that reuse a transaction id: the same transaction again is one row; different content is a dead letter.

Cassandra's rows are keyed by ``transaction_id``, so a second message with the same id would be an
upsert: the same transaction sent twice (a replay, a producer retry) rightly becomes one row, but a
*different* transaction under a used id would silently replace or sit beside the first. So every
valid message's content (its transaction fields, not its Kafka position) gets a :func:`digest`, kept
per id in the keyspace's ``transaction_digests`` table (:func:`fraudlab.streaming.sink.read_digests`),
and :func:`sort_out` judges a micro-batch's valid rows in Kafka order against the stored digests and
the batch's own earlier rows:

* an id not seen before: kept, its digest stored with the batch's rows;
* the same id and content as a stored transaction (a batch replayed after a crash, a replay sent
  twice, a producer's retry): kept, scored again into the same rows (upserts: the customer's history
  does not count it twice). A replayed batch's alerts are not sent twice
  (:mod:`fraudlab.streaming.delivery`); a copy sent again later is alerted again, one alert per
  message classified, as the streaming DAG's check counts them;
* the same id and content as an earlier message of the same batch: dropped and counted (scored with
  it, it would count twice in its own history);
* the same id with different content: a dead letter whose reason names the id and where it was first
  received; the first message's row stays as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudlab import schemas

#: The fields whose values make a transaction's content (its id and derived month aside).
CONTENT_COLUMNS: list[str] = [c for c in schemas.PREPARED_COLUMNS if c not in ("transaction_id", "event_month")]


def digest(row: Mapping[str, Any]) -> str:
    """A digest of the row's :data:`CONTENT_COLUMNS`: equal for the same transaction sent twice."""
    values = [None if row[c] is None else str(row[c]) for c in CONTENT_COLUMNS]
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:32]


def position(row: Mapping[str, Any]) -> str:
    """Where a message was read: ``topic/partition@offset``."""
    return f"{row['kafka_topic']}/{row['kafka_partition']}@{row['kafka_offset']}"


@dataclass
class Sorted:
    """:func:`sort_out`'s verdict over a batch's valid rows (indexes into them)."""

    #: Rows to score and write, in order.
    keep: list[int] = field(default_factory=list)
    #: Rows that repeat an earlier message of the batch (same id, same content): one row carries them.
    repeated: list[int] = field(default_factory=list)
    #: ``{row index: reason}``: the same id as an earlier message, different content.
    conflicts: dict[int, str] = field(default_factory=dict)
    #: ``{transaction_id: (digest, first position)}`` of the kept rows not stored yet, to store with them.
    digests: dict[str, tuple[str, str]] = field(default_factory=dict)


def sort_out(rows: Sequence[Mapping[str, Any]], stored: Mapping[str, tuple[str, str]]) -> Sorted:
    """Judge ``rows`` (valid rows in Kafka order) against ``stored`` (``{id: (digest, first position)}``)."""
    verdict = Sorted()
    seen: dict[str, tuple[str, str]] = {}
    for index, row in enumerate(rows):
        tid, mine = row["transaction_id"], digest(row)
        earlier = seen.get(tid) or stored.get(tid)
        if earlier is None:  # a new transaction
            seen[tid] = verdict.digests[tid] = (mine, position(row))
            verdict.keep.append(index)
        elif earlier[0] != mine:
            verdict.conflicts[index] = (f"transaction_id {tid} was received before, at {earlier[1]}, with other "
                                        "content: the first message stands")
        elif tid in seen:  # the same transaction again in this batch: one row carries it
            verdict.repeated.append(index)
        else:  # the same transaction as a stored one: rewritten in place
            seen[tid] = earlier
            verdict.keep.append(index)
    return verdict
