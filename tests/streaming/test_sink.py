"""The Cassandra sink's statements, their grouping into requests and its retry rule: no Cassandra."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudlab import schemas
from fraudlab.streaming import sink


pytestmark = pytest.mark.spark


def test_insert_statements_name_the_table_columns_in_order():
    settings = sink.CassandraSettings(keyspace="ks")
    cql = sink.insert_cql(settings, schemas.HISTORY_TABLE, schemas.HISTORY_TABLE_COLUMNS)
    assert cql == ("INSERT INTO ks.customer_history (customer, step, transaction_id, merchant, amount) "
                   "VALUES (?, ?, ?, ?, ?)")


def test_writes_are_one_unlogged_batch_per_customer_and_per_alert_day():
    settings = sink.CassandraSettings(keyspace="ks", statements_per_batch=4)
    day = dt.date(2024, 1, 2)
    rows = [{**{c: None for c in schemas.CASSANDRA_ROW_COLUMNS}, "customer": customer, "transaction_id": tid,
             "is_alert": alert, "alert_date": day if alert else None}
            for customer, tid, alert in [("C1", "a", True), ("C2", "b", False), ("C1", "c", True),
                                         ("C1", "d", False), ("C3", "e", True)]]
    groups = sink.write_groups(rows, settings)
    tables = {"customer_history": schemas.HISTORY_TABLE_COLUMNS, "scored_transactions": schemas.SCORED_TABLE_COLUMNS,
              "alerts_by_day": schemas.ALERT_TABLE_COLUMNS}

    def keys(group):
        out = []
        for cql, params in group:
            table = cql.split()[2].split(".")[1]
            assert len(params) == len(tables[table])
            values = dict(zip(tables[table], params))
            out.append((table, values.get("customer"), values.get("alert_date"), values["transaction_id"]))
        return out

    described = [keys(group) for group in groups]
    assert all(1 <= len(group) <= 4 for group in groups)
    # One partition key per group: a customer (history and scored rows together) or an alert day.
    assert all(len({(t == "alerts_by_day", d if t == "alerts_by_day" else c) for t, c, d, _ in g}) == 1
               for g in described)
    # Every row once in each of its tables: C1's three rows (6 statements) over two groups of <= 4.
    assert sorted((t, tid) for g in described for t, _, _, tid in g) == sorted(
        [(t, tid) for tid in "abcde" for t in ("customer_history", "scored_transactions")]
        + [("alerts_by_day", tid) for tid in "ace"])
    assert len(groups) == 2 + 1 + 1 + 1  # C1 (6 statements -> 2 groups), C2, C3, the day's 3 alerts


def test_only_bad_statements_are_not_retried():
    from cassandra import InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    assert all(sink.is_retryable(e) for e in (
        OperationTimedOut(), WriteTimeout("x", write_type=0), Unavailable("x"), NoHostAvailable("down", {})))
    assert not sink.is_retryable(InvalidRequest("no such table"))
    assert not sink.is_retryable(TypeError("bad value"))
