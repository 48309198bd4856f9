"""fraudlab.notebook.live: decoding and throughput on inline records, the reads against the real Kafka and Cassandra.

The service reads use a scratch keyspace and a scratch topic.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import SimpleNamespace

import pandas as pd
import pytest

from fraudlab.notebook import live

# --------------------------------------------------------------------------- decoding and throughput


def record(partition, offset, timestamp_ms, key, value):
    return SimpleNamespace(partition=partition, offset=offset, timestamp=timestamp_ms, key=key, value=value)


def test_decode_records_spreads_json_objects_into_columns_newest_first():
    out = live.decode_records([
        record(0, 7, 1_700_000_000_000, b"t1", json.dumps({"transaction_id": "t1", "fraud_score": 0.9}).encode()),
        record(1, 3, 1_700_000_060_000, b"t2", b"not json"),
    ])
    assert list(out.columns) == ["kafka_partition", "kafka_offset", "kafka_timestamp", "key", "transaction_id",
                                 "fraud_score", "value"]  # fields in the order the messages hold them
    assert list(out["key"]) == ["t2", "t1"]
    assert out["value"][0] == "not json" and pd.isna(out["fraud_score"][0])
    assert out["fraud_score"][1] == 0.9
    assert out["kafka_timestamp"][1] == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")


def test_decode_records_of_nothing_is_an_empty_table():
    out = live.decode_records([])
    assert out.empty and "kafka_timestamp" in out.columns


def test_per_minute_throughput_counts_rows_per_minute_and_lists_empty_minutes():
    times = [dt.datetime(2024, 5, 1, 10, 0, 5), dt.datetime(2024, 5, 1, 10, 0, 50), dt.datetime(2024, 5, 1, 10, 2, 10)]
    out = live.per_minute_throughput(pd.DataFrame({"scored_at": times}), "scored_at")
    assert list(out["rows"]) == [2, 0, 1]
    assert list(out["minute"]) == [pd.Timestamp(f"2024-05-01 10:0{m}", tz="UTC") for m in range(3)]


def test_per_minute_throughput_of_no_rows_is_empty():
    out = live.per_minute_throughput(pd.DataFrame({"scored_at": []}), "scored_at")
    assert out.empty and list(out.columns) == ["minute", "rows"]


# --------------------------------------------------------------------------- service reads (real Kafka and Cassandra)


@pytest.fixture
def scratch_keyspace(cassandra_service):
    from services import runner

    keyspace = f"nblive_{uuid.uuid4().hex[:10]}"
    runner.create_keyspace(keyspace)
    yield keyspace
    runner.drop_keyspace(keyspace)


@pytest.mark.slow
def test_latest_alerts_reads_the_newest_days_first_and_stops_at_n(cassandra_service, scratch_keyspace):
    session = live.connect_cassandra([cassandra_service.host], cassandra_service.port, scratch_keyspace)
    try:
        insert = session.prepare("INSERT INTO alerts_by_day (alert_date, event_time, transaction_id, amount, reasons) "
                                 "VALUES (?, ?, ?, ?, ?)")
        for day, hour, tid in [(1, 9, "a"), (1, 10, "b"), (2, 8, "c"), (2, 12, "d"), (3, 7, "e")]:
            when = dt.datetime(2024, 3, day, hour)
            session.execute(insert, (when.date(), when, tid, 10.0 * day, ["model_score"]))
        latest = live.latest_alerts(session, n=4)
        nothing = live.read_cassandra_table(session, "alerts_by_day", ["transaction_id"], where="alert_date = %s",
                                            parameters=[dt.date(2024, 4, 1)])
    finally:
        session.cluster.shutdown()
    assert list(latest["transaction_id"]) == ["e", "d", "c", "b"]
    assert list(latest["alert_date"]) == [dt.date(2024, 3, 3), dt.date(2024, 3, 2), dt.date(2024, 3, 2),
                                          dt.date(2024, 3, 1)]
    assert latest["reasons"][0] == ["model_score"]
    assert list(latest.columns[:3]) == ["alert_date", "customer", "event_time"]  # the stream's column order
    assert nothing.empty and list(nothing.columns) == ["transaction_id"]


@pytest.mark.slow
def test_latest_alerts_of_an_empty_table_has_the_table_columns(cassandra_service, scratch_keyspace):
    session = live.connect_cassandra([cassandra_service.host], cassandra_service.port, scratch_keyspace)
    try:
        out = live.latest_alerts(session, n=5)
    finally:
        session.cluster.shutdown()
    assert out.empty and {"alert_date", "event_time", "transaction_id", "fraud_score"} <= set(out.columns)


@pytest.mark.slow
def test_read_topic_tail_reads_the_last_n_records_of_every_partition(kafka_service):
    from kafka import KafkaProducer

    from services import runner

    topic = f"nblive_{uuid.uuid4().hex[:10]}"
    runner.create_topics({topic: 2})
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_service.bootstrap_servers, acks="all")
        for i in range(10):
            producer.send(topic, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode(), partition=i % 2)
        producer.flush()
        producer.close()
        out = live.read_topic_tail(kafka_service.bootstrap_servers, topic, last_n=3, timeout_s=30)
    finally:
        runner.delete_topics([topic])
    assert sorted(out["i"]) == [4, 5, 6, 7, 8, 9]  # the last 3 of each partition
    assert sorted(zip(out["kafka_partition"], out["kafka_offset"])) == [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]


@pytest.mark.slow
def test_read_topic_tail_reads_the_last_n_committed_records_past_transaction_markers(kafka_service):
    """As the classifier writes the alerts topic: a transaction per message, so commit markers take every
    other offset, and one aborted transaction at the end, whose record is not an alert."""
    from kafka import KafkaProducer

    from services import runner

    topic = f"nblive_tx_{uuid.uuid4().hex[:10]}"
    runner.create_topics({topic: 1})
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_service.bootstrap_servers, transactional_id=topic)
        producer.init_transactions()
        for i in range(11):
            producer.begin_transaction()
            producer.send(topic, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode())
            if i < 10:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
        producer.close()
        out = live.read_topic_tail(kafka_service.bootstrap_servers, topic, last_n=3, timeout_s=30)
    finally:
        runner.delete_topics([topic])
    assert sorted(out["i"]) == [7, 8, 9]


@pytest.mark.slow
def test_read_topic_tail_of_a_missing_topic_says_so(kafka_service):
    with pytest.raises(ValueError, match="does not exist"):
        live.read_topic_tail(kafka_service.bootstrap_servers, f"nblive_missing_{uuid.uuid4().hex[:8]}", timeout_s=10)
