"""Streaming in the stack: replay and classify on the cluster, then count in Cassandra and Kafka.

`stream_csv_to_kafka` sends a fresh slice to the stack's `transactions` topic (kafka:19092),
`classify_stream --available-now` scores it into Cassandra with the champion the README's fit
registered; then cqlsh in the Cassandra container counts exactly the transactions sent (records,
not distinct keys: the table was empty), and the alerts topic, read from this machine through the
published HOST listener, holds exactly the scored rows at or above the alert threshold. Last, the
`fraud_streaming` DAG succeeds in the containerised Airflow.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.compose import HOST, PORTS

pytestmark = [pytest.mark.slow]

CSV = "/opt/fraudlab/data/raw/stream_input.csv"
ROWS = 1_500
METRICS = "/opt/fraudlab/data/stream/quarantine/_metrics.json"
CHECKPOINT = "/opt/fraudlab/data/stream/checkpoint-compose-test"
#: The model's decision threshold: a smoke-grid model (five boosted trees) may score no row at 0.8.
ALERT_THRESHOLD = 0.5


@pytest.fixture(scope="module")
def streamed(stack):
    stack.exec("spark-worker-a", "python", "/opt/spark-apps/generate_transactions.py", "--rows", str(ROWS),
               "--seed", "7", "--output", CSV)
    started = time.perf_counter()
    stack.spark_submit("stream_csv_to_kafka.py", "--input", CSV)
    stack.timings["stream_csv_to_kafka on the cluster"] = time.perf_counter() - started
    metrics = json.loads(stack.exec("spark-worker-a", "cat", METRICS).stdout)
    started = time.perf_counter()
    done = stack.spark_submit("classify_stream.py", "--available-now", "--checkpoint", CHECKPOINT,
                              "--alert-threshold", str(ALERT_THRESHOLD))
    stack.timings["classify_stream --available-now on the cluster"] = time.perf_counter() - started
    stack.sample_memory()
    return {"metrics": metrics, "classifier": done}


def alerts_on_topic() -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer("fraud_alerts", bootstrap_servers=f"{HOST}:{PORTS['KAFKA_PORT']}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=10_000, isolation_level="read_committed")
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_the_replay_sent_every_valid_row(streamed):
    metrics = streamed["metrics"]
    assert metrics["rows_in"] == ROWS
    assert metrics["rows_sent"] + metrics["rows_quarantined"] == ROWS
    assert metrics["rows_sent"] > 0.99 * ROWS


def test_cassandra_holds_exactly_the_transactions_sent(stack, streamed):
    assert stack.cql_count("fraudlab.scored_transactions") == streamed["metrics"]["rows_sent"]


def test_the_alerts_topic_holds_exactly_the_flagged_rows(stack, streamed):
    flagged = stack.cql_values(f"SELECT transaction_id FROM fraudlab.scored_transactions WHERE fraud_score >= "
                               f"{ALERT_THRESHOLD} ALLOW FILTERING")
    alerts = [json.loads(value)["transaction_id"] for value in alerts_on_topic()]
    if not flagged:
        top = stack.cql("SELECT MAX(fraud_score) FROM fraudlab.scored_transactions")
        pytest.fail(f"no transaction reached the alert threshold {ALERT_THRESHOLD}, so the check would prove "
                    f"nothing; the highest fraud_score:\n{top}", pytrace=False)
    assert len(flagged) < streamed["metrics"]["rows_sent"], "every row flagged: the threshold filters nothing"
    assert len(set(flagged)) == len(flagged), "the table is keyed by transaction: each row once"
    assert sorted(alerts) == sorted(flagged)  # records: each flagged transaction once


def test_fraud_streaming_succeeds_in_the_containerised_airflow(stack, streamed):
    started = time.perf_counter()
    run = stack.trigger_dag("fraud_streaming", {"input_path": CSV, "rows": 500})
    stack.timings["fraud_streaming (REST trigger to success)"] = time.perf_counter() - started
    if run["state"] != "success":
        failed = [t for t, s in run["task_states"].items() if s != "success"]
        logs = "\n".join(stack.task_log("fraud_streaming", run["dag_run_id"], t) for t in failed[:2])
        pytest.fail(f"run {run['state']}; tasks {run['task_states']}\n{logs}", pytrace=False)
