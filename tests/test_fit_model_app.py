"""fit_model through the real spark-submit on a small generated data set, with a throw-away MLflow store."""

from __future__ import annotations

import json
import logging

import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from fraudlab import config, registry
from fraudlab.data import generator
from fraudlab import features
from fraudlab.train import metrics as train_metrics
from fraudlab.train import pipeline as train_pipeline
from fraudlab.train import split as train_split
from fraudlab.drift import DRIFT_FEATURES
from fraudlab.train.gate import gate_thresholds
from fraudlab.train.run import FitOptions, rejected_dir, run
from fraudlab.schemas import PARTITION_COLUMN, PREPARED_SCHEMA
from tests.test_bad_input import earlier_output, tree_digest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROWS = 6_000


@pytest.fixture(scope="module")
def prepared_path(spark, tmp_path_factory):
    """Generated BankSim rows written as prepared_data writes them (Parquet by event_month)."""
    raw = generator.generate(ROWS, seed=11).rename(columns={"zipcodeOri": "zipcode_ori", "zipMerchant": "zip_merchant"})
    event_time = F.timestamp_add("DAY", F.col("step"), F.lit(config.DEFAULT_START_DATE).cast("timestamp"))
    prepared = (
        spark.createDataFrame(raw)
        .withColumn("transaction_id", F.sha2(F.concat_ws("|", F.monotonically_increasing_id(), "customer"), 256))
        .withColumn("event_time", event_time)
        .withColumn("event_month", F.date_format(event_time, "yyyy-MM"))
        .select(*[F.col(f.name).cast(f.dataType) for f in PREPARED_SCHEMA.fields])
    )
    path = tmp_path_factory.mktemp("fit") / "prepared"
    prepared.write.partitionBy(PARTITION_COLUMN).parquet(str(path))
    return str(path)


def _registered_versions(tracking_uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return [v for m in client.search_registered_models() for v in client.search_model_versions(f"name='{m.name}'")]


def test_fit_model_writes_model_metrics_drift_reference_and_registers_the_champion(
        spark, spark_submit, prepared_path, tmp_path):
    import mlflow

    model_dir = tmp_path / "model"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = spark_submit(
        "fit_model.py", "--input", prepared_path, "--model-dir", str(model_dir), "--search", "smoke",
        "--tracking-uri", tracking_uri, "--experiment", "app-test",
        # a small data set: the point here is the plumbing, not the figures
        "--gate", "min_average_precision=0.2", "--gate", "min_roc_auc=0.8", "--gate", "min_recall=0.1",
    )
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["steps"] == {"min": 0, "max": 179, "validation_from": 115, "test_from": 144}
    assert metrics["train_rows"] + metrics["test_rows"] == ROWS
    assert {c["model_type"] for c in metrics["search"]["candidates"]} == {"LogisticRegression", "GBTClassifier"}
    best = metrics["search"]["candidates"][0]
    assert metrics["model_type"] == best["model_type"]
    assert metrics["threshold"] == best["validation_threshold"]["threshold"]  # chosen on validation, not test
    assert metrics["gate"]["passed"] is True
    importances = [f["importance"] for f in metrics["feature_importances"]]
    assert importances == sorted(importances, reverse=True)  # empty for a logistic regression

    # the saved model reproduces the reported test figures
    pipeline_model = PipelineModel.load(str(model_dir))
    data = features.model_input(spark.read.parquet(prepared_path))
    _, test = train_split.temporal_split(data, 144)
    scored = train_pipeline.predict(pipeline_model, test).cache()
    assert scored.count() == metrics["test_rows"]
    assert train_metrics.average_precision(scored) == pytest.approx(metrics["test_average_precision"], abs=1e-9)
    at = train_metrics.confusion_at(scored, metrics["threshold"])
    assert (at["precision"], at["recall"]) == pytest.approx((metrics["test_precision"], metrics["test_recall"]))

    drift = json.loads((model_dir / "drift_reference.json").read_text())
    assert sorted(drift["features"]) == sorted(DRIFT_FEATURES)
    assert drift["rows"] == metrics["train_rows"]
    for feature in drift["features"].values():
        assert len(feature["shares"]) == len(feature["edges"]) + 1
        assert sum(feature["shares"]) == pytest.approx(1.0)

    versions = _registered_versions(tracking_uri)
    assert [str(v.version) for v in versions] == ["1"]
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert str(client.get_model_version_by_alias(config.MODEL_NAME, config.CHAMPION_ALIAS).version) == "1"
    assert metrics["mlflow"]["registered_version"] == "1" and metrics["mlflow"]["promoted"] is True


def test_fit_model_below_the_gate_exits_non_zero_registers_nothing_and_keeps_the_champion_folder(
        spark, prepared_path, tmp_path, caplog):
    import mlflow

    # in-process through the package's training run, on the test session: the plumbing is the one spark-submit runs
    model_dir = earlier_output(tmp_path / "model")  # where the good model lives
    champion_files = tree_digest(model_dir)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    options = FitOptions(input=prepared_path, model_dir=str(model_dir), search="smoke", tracking_uri=tracking_uri)
    gate = ["min_average_precision=0.9999", "min_roc_auc=0", "min_recall=0"]
    with caplog.at_level(logging.INFO, logger="fit_model"):
        exit_code = run(spark, options, gate_thresholds(gate, None))
    assert exit_code == 1
    assert any(r.levelno == logging.ERROR and "gate failed: test_average_precision" in r.getMessage()
               for r in caplog.records)

    assert tree_digest(model_dir) == champion_files
    rejected = tmp_path / "model_rejected"
    assert rejected_dir(str(model_dir)) == str(rejected)
    metrics = json.loads((rejected / "metrics.json").read_text())
    assert metrics["gate"]["passed"] is False
    assert metrics["gate"]["failed"] == ["min_average_precision"]
    with pytest.raises(registry.GateRefused, match="failed its validation gate"):
        registry.load_model(str(rejected))
    check = next(c for c in metrics["gate"]["checks"] if c["rule"] == "min_average_precision")
    assert check["margin"] == pytest.approx(metrics["test_average_precision"] - 0.9999)
    assert metrics["mlflow"]["registered_version"] is None

    assert _registered_versions(tracking_uri) == []
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("fraudlab").experiment_id])
    assert [r.data.tags["gate_passed"] for r in runs] == ["false"]


def test_fit_model_with_mlflow_down_fails_at_once_and_writes_nothing(spark_submit, prepared_path, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one refused connection is enough here
    model_dir = earlier_output(tmp_path / "model")
    before = tree_digest(model_dir)
    proc = spark_submit("fit_model.py", "--input", prepared_path, "--model-dir", str(model_dir), "--search", "smoke",
                        "--tracking-uri", "http://127.0.0.1:9")  # the discard port: nothing listens
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "Py4JJavaError" not in output, output[-3000:]
    assert any("MLflow at http://127.0.0.1:9 cannot be used" in line and "nothing fitted" in line
               for line in output.splitlines()), output[-3000:]
    assert "candidate" not in output  # refused before the search
    assert tree_digest(model_dir) == before and not (tmp_path / "model_rejected").exists()
