"""Airflow in its containers: sign in through Chromium, then `fraud_batch_local` on the cluster.

The DAG is triggered over REST API v2 (a JWT from /auth/token with the password Airflow generated
at first start) on 3,000 generated rows with a lenient gate; its SparkSubmitOperator drivers run
in the scheduler container (LocalExecutor) against spark://spark-master:7077 (`search: smoke`, one
candidate per model family: the cluster is two 1-core workers). It must succeed,
the master's JSON must list its four apps as finished, and the model version it registered must be
in the stack's MLflow, with the `champion` alias if and only if it beats the champion before it.
"""

from __future__ import annotations

import collections
import json
import time

import pytest

from tests.compose import http, url
from tests.compose.browser import airflow_sign_in

pytestmark = [pytest.mark.slow]

DAGS = ("fraud_batch_local", "fraud_batch_emr", "fraud_monthly_report", "fraud_streaming")
APPS = ("prepare_data", "fit_model", "score_claims", "monthly_report")
MODEL_NAME = "fraudlab_fraud_classifier"
CHAMPION_METRIC = "test_average_precision"
INPUT = "/opt/fraudlab/data/raw/dag_input.csv"
LENIENT_GATE = {"min_average_precision": 0.05, "min_roc_auc": 0.5, "min_recall": 0.05}


def finished_apps() -> collections.Counter:
    status, master = http("GET", url("SPARK_MASTER_UI_PORT", "/json/"))
    assert status == 200
    return collections.Counter(a["name"] for a in master["completedapps"] if a["state"] == "FINISHED")


def model_versions() -> dict[str, str]:
    """{version: run id} of the lab's registered model in the stack's MLflow."""
    status, body = http("GET", url("MLFLOW_PORT", f"/api/2.0/mlflow/model-versions/search?filter=name%3D%27{MODEL_NAME}%27"))
    assert status == 200, body
    return {v["version"]: v["run_id"] for v in body.get("model_versions", [])}


def run_metric(run_id: str) -> float:
    """The run's test average precision: the metric the registry compares champions by."""
    status, run = http("GET", url("MLFLOW_PORT", f"/api/2.0/mlflow/runs/get?run_id={run_id}"))
    assert status == 200, run
    return {m["key"]: m["value"] for m in run["run"]["data"]["metrics"]}[CHAMPION_METRIC]


def champion_version() -> str | None:
    status, body = http("GET", url("MLFLOW_PORT", f"/api/2.0/mlflow/registered-models/alias?name={MODEL_NAME}&alias=champion"))
    return body["model_version"]["version"] if status == 200 else None


def test_the_api_refuses_a_request_without_a_token(stack):
    status, _ = http("GET", url("AIRFLOW_API_PORT", "/api/v2/dags"))
    assert status == 401


def test_sign_in_through_the_browser_shows_every_dag(stack):
    text = airflow_sign_in(url("AIRFLOW_API_PORT"), "admin", stack.airflow_password(), then="/dags",
                           name="airflow-dags", wait_for="fraud_batch_local")
    for dag in DAGS:
        assert dag in text, f"{dag} not in the DAG list after sign-in"


@pytest.fixture(scope="module")
def batch_run(stack):
    stack.exec("spark-worker-a", "python", "/opt/spark-apps/generate_transactions.py", "--rows", "3000",
               "--output", INPUT)
    apps_before, versions_before, champion_before = finished_apps(), model_versions(), champion_version()
    started = time.perf_counter()
    run = stack.trigger_dag("fraud_batch_local", {"input_path": INPUT, "search": "smoke", **LENIENT_GATE})
    stack.timings["fraud_batch_local on the cluster (REST trigger to success)"] = time.perf_counter() - started
    return {"run": run, "apps_before": apps_before, "versions_before": versions_before,
            "champion_before": champion_before}


def test_fraud_batch_local_succeeds_on_the_cluster(stack, batch_run):
    run = batch_run["run"]
    if run["state"] != "success":
        failed = [t for t, s in run["task_states"].items() if s != "success"]
        logs = "\n".join(stack.task_log("fraud_batch_local", run["dag_run_id"], t) for t in failed[:2])
        pytest.fail(f"run {run['state']}; tasks {run['task_states']}\n{logs}", pytrace=False)
    assert set(run["task_states"].values()) == {"success"}, run["task_states"]


def test_its_spark_apps_finished_on_the_standalone_master(stack, batch_run):
    after = finished_apps()
    for app in APPS:
        assert after[app] == batch_run["apps_before"][app] + 1, (app, after)


def test_the_registry_keeps_the_better_model_as_champion(stack, batch_run):
    # The README's fit (50,000 rows) made the first champion; this run's model (3,000 rows) takes
    # the alias only if its test average precision is higher: a weaker model never replaces it.
    versions = model_versions()
    new = sorted(set(versions) - set(batch_run["versions_before"]), key=int)
    assert len(new) == 1, versions
    before = batch_run["champion_before"]
    expected = new[0] if before is None or run_metric(versions[new[0]]) > run_metric(versions[before]) else before
    assert champion_version() == expected, (versions, before)
    status, run = http("GET", url("MLFLOW_PORT", f"/api/2.0/mlflow/runs/get?run_id={versions[new[0]]}"))
    assert status == 200 and run["run"]["info"]["status"] == "FINISHED", run
    # Artifacts go through the MLflow server (proxied), never to a path of the driver's container.
    assert run["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:"), run["run"]["info"]


def test_its_scored_claims_and_report_are_on_the_data_volume(stack, batch_run):
    scored = "/opt/fraudlab/data/scored/claims"
    metrics = json.loads(stack.exec("spark-master", "cat", f"{scored}/_metrics.json").stdout)
    assert metrics["claims_processed"] > 0
    count = stack.exec("spark-master", "python", "-c",
                       f"import pyarrow.dataset as d; print(d.dataset('{scored}', format='parquet').count_rows())")
    assert int(count.stdout.strip()) == metrics["claims_processed"]
    stack.exec("spark-master", "test", "-s", "/opt/fraudlab/data/reports/month=2024-06/report.json")


def test_the_dag_grid_renders_the_run_after_sign_in(stack, batch_run):
    text = airflow_sign_in(url("AIRFLOW_API_PORT"), "admin", stack.airflow_password(),
                           then="/dags/fraud_batch_local", name="airflow-grid", wait_for="fit_model")
    assert "fraud_batch_local" in text and "fit_model" in text
