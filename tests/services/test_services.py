"""The Docker-free services for real: Kafka 4.3, Cassandra 5.0 and Spark's Kafka connector.

Nothing is mocked. The fixtures of tests/services/fixtures.py start the JVMs with
services.runner (about 30 s the first time) and stop them after the session.
Run: ``.venv/bin/python -m pytest tests/services -q -p tests.services.fixtures``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timezone

import pytest

from fraudlab.config import TOPIC_ALERTS, TOPIC_DEAD_LETTER, TOPIC_TRANSACTIONS
from services import runner

pytestmark = pytest.mark.slow


@pytest.fixture
def scratch_topic(kafka_service):
    """A fresh one-partition topic, deleted afterwards, so tests never touch the lab's topics."""
    from kafka.admin import NewTopic

    name = f"services_test_{uuid.uuid4().hex[:12]}"
    admin = runner.kafka_admin(30)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], timeout_ms=30_000)
        admin.wait_for_topics([name], timeout_ms=30_000)
    finally:
        admin.close()
    yield name
    admin = runner.kafka_admin(30)
    try:
        admin.delete_topics([name], timeout_ms=30_000)
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    """The topic's records from the start, read through a consumer group.

    Polls until `expected` records arrived (or 60 s passed), then once more so that extra
    records would show up in the result too.
    """
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"services-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    records: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend((r.key, r.value) for r in batch)
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend((r.key, r.value) for r in batch)
    finally:
        consumer.close()
    return records


def test_kafka_has_the_lab_topics_with_their_partitions(kafka_service):
    admin = runner.kafka_admin(30)
    try:
        topics = admin.describe_topics(list(kafka_service.topics))
        described = {d["name"]: len(d["partitions"]) for d in topics}
    finally:
        admin.close()

    assert set(kafka_service.topics) == {TOPIC_TRANSACTIONS, TOPIC_ALERTS, TOPIC_DEAD_LETTER}
    assert described == {TOPIC_TRANSACTIONS: 2, TOPIC_ALERTS: 1, TOPIC_DEAD_LETTER: 1}


def test_kafka_python_produces_and_consumes_a_message(kafka_service, scratch_topic):
    assert kafka_service.bootstrap_servers == f"127.0.0.1:{runner.KAFKA_PORT}"

    _produce(kafka_service.bootstrap_servers, scratch_topic, b"txn-1", b'{"amount": 12.5}')
    received = _consume_all(kafka_service.bootstrap_servers, scratch_topic, 1)

    assert received == [(b"txn-1", b'{"amount": 12.5}')]


def test_cassandra_has_the_keyspace_and_both_tables(cassandra_service):
    with runner.cassandra_session() as session:
        keyspace = session.execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
            (cassandra_service.keyspace,),
        ).one()
        tables = {
            row.table_name
            for row in session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
                (cassandra_service.keyspace,),
            )
        }

    assert keyspace is not None
    assert keyspace.replication["class"].endswith("SimpleStrategy")
    assert keyspace.replication["replication_factor"] == "1"
    assert {"scored_transactions", "alerts_by_day"} <= tables


#: Each table and its partition key: a customer's history, and one day's alerts.
TABLE_KEYS = [("scored_transactions", "customer"), ("alerts_by_day", "alert_date")]


@pytest.mark.parametrize(("table", "partition_key"), TABLE_KEYS)
def test_table_keys_serve_the_analyst_reads(cassandra_service, table, partition_key):
    with runner.cassandra_session() as session:
        rows = session.execute(
            "SELECT column_name, kind, position, clustering_order FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (cassandra_service.keyspace, table),
        )
        keys = sorted(
            (row.kind, row.position, row.column_name, row.clustering_order)
            for row in rows
            if row.kind in ("partition_key", "clustering")
        )

    assert keys == [
        ("clustering", 0, "event_time", "desc"),
        ("clustering", 1, "transaction_id", "asc"),
        ("partition_key", 0, partition_key, "none"),
    ]


def _scored_row(transaction_id: str, customer: str, fraud_score: float) -> dict:
    return {
        "transaction_id": transaction_id,
        "step": 3,
        "customer": customer,
        "age": "4",
        "gender": "F",
        "merchant": "M1823072687",
        "category": "es_transportation",
        "amount": 42.5,
        "fraud": None,
        "event_time": datetime(2024, 1, 4, 10, 30, tzinfo=timezone.utc),
        "fraud_probability": 0.91,
        "fraud_score": fraud_score,
        "risk_tier": "high",
        "reasons": ["amount_outlier"],
        "model_version": "3",
        "scored_at": datetime(2024, 1, 4, 10, 31, tzinfo=timezone.utc),
        "alert_date": date(2024, 1, 4),
    }


@pytest.mark.parametrize(("table", "partition_key"), TABLE_KEYS)
def test_writing_the_same_transaction_twice_leaves_one_row(cassandra_service, table, partition_key):
    customer = f"C-test-{uuid.uuid4().hex[:10]}"
    transaction_id = f"T-{uuid.uuid4().hex[:10]}"
    first, replay = _scored_row(transaction_id, customer, 0.80), _scored_row(transaction_id, customer, 0.95)
    columns = [c for c in first if table == "alerts_by_day" or c != "alert_date"]
    placeholders = ", ".join(["%s"] * len(columns))
    insert = f"INSERT INTO {cassandra_service.keyspace}.{table} ({', '.join(columns)}) VALUES ({placeholders})"

    with runner.cassandra_session() as session:
        for row in (first, replay):
            session.execute(insert, [row[c] for c in columns])
        stored = list(
            session.execute(
                f"SELECT transaction_id, fraud_score FROM {cassandra_service.keyspace}.{table} "
                f"WHERE {partition_key} = %s AND transaction_id = %s ALLOW FILTERING",
                (first[partition_key], transaction_id),
            )
        )
        session.execute(
            f"DELETE FROM {cassandra_service.keyspace}.{table} WHERE {partition_key} = %s "
            "AND event_time = %s AND transaction_id = %s",
            (first[partition_key], first["event_time"], transaction_id),
        )

    assert [(r.transaction_id, r.fraud_score) for r in stored] == [(transaction_id, 0.95)]


def test_status_reports_both_services_running(kafka_service, cassandra_service):
    states = runner.status()
    cli = subprocess.run(
        [sys.executable, "-m", "services.runner", "status"],
        cwd=runner.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert {name: s.state for name, s in states.items()} == {"kafka": "running", "cassandra": "running"}
    assert cli.returncode == 0, cli.stdout + cli.stderr
    printed = [line.split()[:2] for line in cli.stdout.splitlines()]
    assert printed == [["kafka", "running"], ["cassandra", "running"]]


@pytest.mark.parametrize(
    ("name", "ports"),
    [("kafka", {runner.KAFKA_PORT, runner.KAFKA_CONTROLLER_PORT}),
     ("cassandra", {runner.CASSANDRA_PORT, runner.CASSANDRA_STORAGE_PORT})],
)  # fmt: skip
def test_services_listen_on_loopback_only(kafka_service, cassandra_service, name, ports):
    pid = runner.running_pid(name)
    assert pid is not None
    sockets = runner.listening_sockets(pid)

    assert {port for _, port in sockets} >= ports
    assert {host for host, _ in sockets} == {"127.0.0.1"}, sockets


def test_kafka_keeps_its_data_across_down_and_up(kafka_service, scratch_topic):
    _produce(kafka_service.bootstrap_servers, scratch_topic, b"before-restart", b"kept")

    runner.down(["kafka"])
    assert runner.status(["kafka"])["kafka"].state == "stopped"
    runner.up(["kafka"])

    assert _consume_all(kafka_service.bootstrap_servers, scratch_topic, 1) == [(b"before-restart", b"kept")]


SPARK_ROUND_TRIP = r"""
import json, sys
from pyspark.sql import SparkSession, functions as F

bootstrap, topic, jars = sys.argv[1], sys.argv[2], sys.argv[3]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("services_spark_kafka_check")
    .config("spark.jars", jars)
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
rows = spark.range(10).select(
    F.col("id").cast("string").alias("key"),
    F.concat(F.lit("txn-"), F.col("id").cast("string")).alias("value"),
)
rows.write.format("kafka").option("kafka.bootstrap.servers", bootstrap).option("topic", topic).save()
back = (
    spark.read.format("kafka")
    .option("kafka.bootstrap.servers", bootstrap)
    .option("subscribe", topic)
    .option("startingOffsets", "earliest")
    .option("endingOffsets", "latest")
    .load()
    .select(F.col("key").cast("string").alias("key"), F.col("value").cast("string").alias("value"))
)
print("RESULT " + json.dumps(sorted([r.key, r.value] for r in back.collect())))
spark.stop()
"""


@pytest.mark.spark
def test_spark_writes_and_reads_kafka_with_the_fetched_connector(
    kafka_service, scratch_topic, spark_kafka_jars
):
    # A fresh Python process: spark.jars only applies to a JVM started with it, and the test
    # session may already have a SparkSession without the connector.
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    done = subprocess.run(
        [sys.executable, "-c", SPARK_ROUND_TRIP,
         kafka_service.bootstrap_servers, scratch_topic, ",".join(spark_kafka_jars)],
        cwd=runner.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]

    assert done.returncode == 0, done.stderr[-3000:]
    assert result, done.stdout[-3000:]
    assert json.loads(result[-1][len("RESULT ") :]) == [[str(i), f"txn-{i}"] for i in range(10)]
