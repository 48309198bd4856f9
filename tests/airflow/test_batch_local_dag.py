"""``fraud_batch_local`` run for real: ``dag.test()`` with spark-submit on local[2], 3,000 generated rows.

The passing run (the session fixture ``batch_local_run``, gate thresholds a small
data set can pass) must leave every app's output behind: the prepared data set,
a model registered in the run's MLflow SQLite store under the champion alias, the
scored claims with their ``_metrics.json`` and the month's report. A second run
with an impossible gate must fail at ``fit_model``, score nothing and leave the
registry as it was.
"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TASKS = ("package_fraudlab", "prepare_data", "fit_model", "score_claims", "monthly_report")


def read_json(path):
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


def run_folder(run):
    """The run's own folder: <data_root>/runs/fraud_batch_local/<run id, made path-safe>."""
    return run.data_root / "runs" / "fraud_batch_local" / re.sub(r"[^A-Za-z0-9._-]+", "_", run.run_id)


def registry_state(tracking_uri: str) -> tuple[list[str], str | None]:
    """(registered versions, the version under the champion alias) of the lab's model."""
    from fraudlab.config import CHAMPION_ALIAS, MODEL_NAME
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'"))
    try:
        champion = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    except MlflowException:
        champion = None
    return versions, champion


def test_run_succeeds_task_by_task(batch_local_run):
    assert batch_local_run.states == {task: "success" for task in TASKS}
    assert batch_local_run.state == "success"


def test_prepared_data_keeps_every_generated_row(batch_local_run, banksim_csv):
    rows = len(banksim_csv.read_bytes().splitlines()) - 1
    metrics = read_json(run_folder(batch_local_run) / "prepared" / "_metrics.json")
    assert metrics["rows_in"] == rows
    assert metrics["rows_out"] == rows and metrics["rows_quarantined"] == 0
    assert (run_folder(batch_local_run) / "fraudlab.zip").is_file()


def test_model_is_registered_as_champion(batch_local_run):
    metrics = read_json(run_folder(batch_local_run) / "model" / "metrics.json")
    assert metrics["gate"]["passed"] is True
    versions, champion = registry_state(batch_local_run.tracking_uri)
    registered = str(metrics["mlflow"]["registered_version"])
    assert versions == [registered]
    assert champion == registered


def test_claims_are_scored_with_metrics(batch_local_run):
    prepared = read_json(run_folder(batch_local_run) / "prepared" / "_metrics.json")
    scored_dir = batch_local_run.data_root / "scored" / "claims"
    metrics = read_json(scored_dir / "_metrics.json")
    assert metrics["claims_processed"] == prepared["rows_out"]
    assert 0 < metrics["flagged"] < metrics["claims_processed"]
    assert sorted(p.name for p in scored_dir.glob("event_month=*")) == [
        f"event_month=2024-0{m}" for m in range(1, 7)]


def test_report_of_the_requested_month(batch_local_run):
    reports = batch_local_run.data_root / "reports"
    assert [p.name for p in reports.iterdir()] == ["month=2024-06"]
    report = read_json(reports / "month=2024-06" / "report.json")
    assert report["month"] == "2024-06" and report["has_data"] is True
    assert report["summary"]["claims"] > 0


def test_failed_gate_fails_the_run_and_promotes_nothing(batch_local_run, dagbag, run_dag):
    before = registry_state(batch_local_run.tracking_uri)
    scored_metrics = batch_local_run.data_root / "scored" / "claims" / "_metrics.json"
    scored_before = scored_metrics.read_bytes()
    conf = {**batch_local_run.conf, "min_average_precision": 1.01}

    run = run_dag(dagbag.dags["fraud_batch_local"], conf, "fraud_batch_local (dag.test, gate fails)")

    assert run.states == {"package_fraudlab": "success", "prepare_data": "success", "fit_model": "failed",
                          "score_claims": "upstream_failed", "monthly_report": "upstream_failed"}
    assert run.state == "failed"
    assert registry_state(batch_local_run.tracking_uri) == before
    assert scored_metrics.read_bytes() == scored_before
    run.data_root = batch_local_run.data_root
    # the failed model is kept beside the run's model folder, never in it
    assert not (run_folder(run) / "model").exists()
    gate = read_json(run_folder(run) / "model_rejected" / "metrics.json")["gate"]
    assert gate["passed"] is False and gate["failed"] == ["min_average_precision"]
