"""Messages that reuse a transaction id (``fraudlab.streaming.duplicates``), judged on inline rows.

The same transaction sent again is one row; another transaction under a used id is a dead letter
with the place of the first, whether the first came in the same micro-batch or an earlier one; a
batch replayed after a crash (its digests already stored) rewrites its rows. Against the real Kafka
and Cassandra: ``tests/streaming/test_streaming_e2e.py``.
"""

from __future__ import annotations

import datetime as dt

from fraudlab.streaming import duplicates


def row(tid: str, offset: int, amount: float = 4.55, **changes) -> dict:
    return {"transaction_id": tid, "step": 5, "customer": "C1", "age": "4", "gender": "M", "zipcode_ori": "28007",
            "merchant": "M1", "zip_merchant": "28007", "category": "es_food", "amount": amount, "fraud": 0,
            "event_time": dt.datetime(2024, 1, 6), "kafka_topic": "tx", "kafka_partition": 1, "kafka_offset": offset,
            **changes}


def test_the_digest_is_the_content_not_the_kafka_position_nor_the_id():
    assert duplicates.digest(row("a", 1)) == duplicates.digest(row("b", 9, kafka_partition=0))
    for field, value in [("amount", 4.56), ("merchant", "M2"), ("step", 6), ("fraud", None),
                         ("event_time", dt.datetime(2024, 1, 7))]:
        assert duplicates.digest(row("a", 1)) != duplicates.digest(row("a", 1, **{field: value})), field


def test_new_ids_are_kept_and_their_digests_stored_with_the_first_position():
    verdict = duplicates.sort_out([row("a", 1), row("b", 2)], {})
    assert (verdict.keep, verdict.repeated, verdict.conflicts) == ([0, 1], [], {})
    assert verdict.digests == {"a": (duplicates.digest(row("a", 1)), "tx/1@1"),
                               "b": (duplicates.digest(row("b", 2)), "tx/1@2")}


def test_the_same_transaction_twice_in_a_batch_is_one_row():
    verdict = duplicates.sort_out([row("a", 1), row("b", 2), row("a", 3)], {})
    assert (verdict.keep, verdict.repeated, verdict.conflicts) == ([0, 1], [2], {})


def test_other_content_under_a_used_id_is_a_conflict_naming_the_first_place():
    verdict = duplicates.sort_out([row("a", 1), row("a", 2, amount=99.0), row("a", 3, amount=98.0)], {})
    assert verdict.keep == [0] and verdict.repeated == []
    assert verdict.conflicts == {
        1: "transaction_id a was received before, at tx/1@1, with other content: the first message stands",
        2: "transaction_id a was received before, at tx/1@1, with other content: the first message stands"}


def test_an_id_an_earlier_batch_stored_is_rewritten_or_a_conflict():
    stored = {"a": (duplicates.digest(row("a", 1)), "tx/1@1")}
    verdict = duplicates.sort_out([row("a", 40), row("a", 41, amount=1.0), row("c", 42), row("a", 43)], stored)
    assert verdict.keep == [0, 2], "the same transaction again in a later batch: the same row, rewritten"
    assert verdict.repeated == [3], "and once only in its batch"
    assert list(verdict.conflicts) == [1] and "at tx/1@1," in verdict.conflicts[1]
    assert list(verdict.digests) == ["c"], "a stored digest is not written again"


def test_a_batch_replayed_after_a_crash_rewrites_its_rows():
    first = duplicates.sort_out([row("a", 1), row("b", 2), row("a", 3)], {})
    again = duplicates.sort_out([row("a", 1), row("b", 2), row("a", 3)], first.digests)
    assert (again.keep, again.repeated, again.conflicts, again.digests) == ([0, 1], [2], {}, {})
