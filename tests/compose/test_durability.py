"""Durability of the stack's state (last module of the package: it restarts the stack).

`down` without `-v` and `up` again keeps Cassandra's rows, Kafka's topics and offsets, MLflow's
models and Airflow's run history; `down -v` removes every volume of the project, so nothing of
that state is left to come back.
"""

from __future__ import annotations

import time

import pytest

from tests.compose import ARTIFACTS, HOST, PORTS, PROJECT, UP_TIMEOUT_S, http, url

pytestmark = [pytest.mark.slow]

MODEL_NAME = "fraudlab_fraud_classifier"


def kafka_end_offsets() -> dict[str, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=f"{HOST}:{PORTS['KAFKA_PORT']}", request_timeout_ms=30_000)
    try:
        partitions = [TopicPartition(t, p) for t in sorted(consumer.topics()) if not t.startswith("__")
                      for p in sorted(consumer.partitions_for_topic(t) or [])]
        return {f"{tp.topic}-{tp.partition}": offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def state(stack) -> dict:
    """What a user would miss if it were gone."""
    token = stack.airflow_token()
    status, runs = http("GET", url("AIRFLOW_API_PORT", "/api/v2/dags/~/dagRuns?limit=100"), token)
    assert status == 200, runs
    status, versions = http("GET", url("MLFLOW_PORT", "/api/2.0/mlflow/model-versions/search?"
                                       f"filter=name%3D%27{MODEL_NAME}%27"))
    assert status == 200, versions
    return {
        "cassandra_rows": stack.cql_count("fraudlab.scored_transactions"),
        "kafka_end_offsets": kafka_end_offsets(),
        "mlflow_versions": sorted(v["version"] for v in versions.get("model_versions", [])),
        "airflow_runs": sorted((r["dag_id"], r["dag_run_id"], r["state"]) for r in runs["dag_runs"]),
    }


def project_volumes(stack) -> list[str]:
    out = stack.docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout
    return sorted(out.split())


def test_down_and_up_keeps_every_service_state(stack):
    before = state(stack)
    assert before["cassandra_rows"] > 0 and before["mlflow_versions"] and before["airflow_runs"], before
    assert any(offset > 0 for offset in before["kafka_end_offsets"].values()), before
    logs = stack.compose("logs", "--no-color", "--timestamps", timeout=300, check=False)
    (ARTIFACTS / "compose-before-restart.log").write_text(logs.stdout + logs.stderr)

    started = time.perf_counter()
    stack.compose("down", timeout=600)
    stack.compose("up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 120)
    stack.timings["down + up --wait (volumes kept)"] = time.perf_counter() - started
    after = state(stack)
    assert after == before


def test_down_v_forgets_everything(stack):
    assert len(project_volumes(stack)) == 7  # data, Kafka, Cassandra, MLflow, Postgres, Airflow logs, secrets
    stack.compose("down", "-v", timeout=600)
    assert project_volumes(stack) == []
    assert not [c for c in stack.ps()], "containers left after down -v"
