"""Airflow's API server, scheduler and DAG processor for real, driven the way the UI drives them.

``airflow api-server`` listens on 127.0.0.1 (a free port) with the simple auth
manager and a known user; the scheduler (LocalExecutor) and the DAG processor
run beside it on the same SQLite DB. The tests get a JWT from ``/auth/token``,
list the DAGs, unpause ``fraud_batch_local``, trigger it with a conf (the trigger
form) and wait for the run to succeed on local Spark, then read a task's log
through the API. Every process started here is stopped at the end of the module.
"""

from __future__ import annotations

import inspect
import json
import time
import urllib.parse
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

RUN_TIMEOUT_S = 30 * 60
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services(airflow_db, airflow_services, tmp_path_factory):
    with airflow_services(tmp_path_factory.mktemp("airflow-services-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def token(services) -> str:
    return services.token()


@pytest.fixture(scope="module")
def triggered_run(services, token, api, banksim_csv, lenient_gate, timings, tmp_path_factory):
    """fraud_batch_local unpaused and triggered through the REST API, followed until it ends."""
    base = f"{services.base_url}/api/v2/dags/fraud_batch_local"
    data_root = tmp_path_factory.mktemp("api-data")
    conf = {"data_root": str(data_root), "input_path": str(banksim_csv),
            "mlflow_tracking_uri": f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}", "search": "smoke", **lenient_gate}
    status, body = api("PATCH", base, token, {"is_paused": False})
    assert status == 200 and body["is_paused"] is False, body
    started = time.perf_counter()
    status, run = api("POST", f"{base}/dagRuns", token,
                      {"logical_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "conf": conf})
    assert status == 200, run
    run_url = f"{base}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"
    while True:
        services.check_alive()
        status, run = api("GET", run_url, token)
        assert status == 200, run
        if run["state"] in ("success", "failed"):
            break
        assert time.perf_counter() - started < RUN_TIMEOUT_S, f"run still {run['state']}\n{services.log_tail()}"
        time.sleep(5)
    timings["fraud_batch_local (API trigger, scheduler + LocalExecutor)"] = time.perf_counter() - started
    status, tis = api("GET", f"{run_url}/taskInstances", token)
    assert status == 200, tis
    api("PATCH", base, token, {"is_paused": True})
    return {"run": run, "url": run_url, "data_root": data_root,
            "states": {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}}


def test_health_endpoint_answers_without_a_token(services, api):
    status, health = api("GET", f"{services.base_url}/api/v2/monitor/health")
    assert status == 200
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"
    assert health["dag_processor"]["status"] == "healthy"


def test_token_needs_the_right_password(services, api):
    status, _ = api("POST", f"{services.base_url}/auth/token", body={"username": "fraudlab", "password": "wrong"})
    assert status == 401
    status, _ = api("GET", f"{services.base_url}/api/v2/dags")
    assert status == 401


def test_dag_list_holds_every_dag(services, token, api):
    status, body = api("GET", f"{services.base_url}/api/v2/dags?limit=100", token)
    assert status == 200
    dags = {d["dag_id"]: d for d in body["dags"]}
    expected = {"fraud_batch_local", "fraud_batch_emr", "fraud_monthly_report", "fraud_streaming"}
    assert expected <= set(dags)
    assert all(dags[d]["owners"] == ["fraudlab"] for d in expected)


def test_streaming_docs_reach_the_ui_from_the_markdown_file(services, token, api):
    """The DAG processor serialises fraud_streaming.md's text (read by the DAG file), not the file's name."""
    status, body = api("GET", f"{services.base_url}/api/v2/dags/fraud_streaming/details", token)
    assert status == 200, body
    assert body["doc_md"] == inspect.cleandoc((REPO / "dags" / "fraud_streaming.md").read_text())
    assert "## The check: what this run sent, in Cassandra and on the alerts topic" in body["doc_md"]


def test_triggered_run_succeeds(triggered_run, services):
    assert triggered_run["run"]["state"] == "success", services.log_tail()
    assert triggered_run["states"] == {task: "success" for task in (
        "package_fraudlab", "prepare_data", "fit_model", "score_claims", "monthly_report")}


def test_triggered_run_used_the_conf(triggered_run):
    data_root = triggered_run["data_root"]
    metrics = json.loads((data_root / "scored" / "claims" / "_metrics.json").read_text())
    assert metrics["claims_processed"] > 0
    assert (data_root / "reports" / "month=2024-06" / "report.json").is_file()


def test_task_log_is_served_without_a_log_server(triggered_run, services, token, api):
    status, body = api("GET", f"{triggered_run['url']}/taskInstances/fit_model/logs/1?full_content=true", token)
    assert status == 200, body
    text = json.dumps(body)
    assert "spark-submit" in text and "fit_model.py" in text
