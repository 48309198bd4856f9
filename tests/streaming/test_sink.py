"""The Cassandra sink's statements and its retry rule: no Cassandra."""

from __future__ import annotations


import pytest

from fraudlab import schemas
from fraudlab.streaming import sink


pytestmark = pytest.mark.spark


def test_insert_statements_name_the_table_columns_in_order():
    settings = sink.CassandraSettings(keyspace="ks")
    cql = sink.insert_cql(settings, schemas.HISTORY_TABLE, schemas.HISTORY_TABLE_COLUMNS)
    assert cql == ("INSERT INTO ks.customer_history (customer, step, transaction_id, merchant, amount) "
                   "VALUES (?, ?, ?, ?, ?)")


def test_only_bad_statements_are_not_retried():
    from cassandra import InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    assert all(sink.is_retryable(e) for e in (
        OperationTimedOut(), WriteTimeout("x", write_type=0), Unavailable("x"), NoHostAvailable("down", {})))
    assert not sink.is_retryable(InvalidRequest("no such table"))
    assert not sink.is_retryable(TypeError("bad value"))
