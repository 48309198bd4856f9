"""fraudlab.registry against a throw-away SQLite MLflow store: log, register, champion alias, load back."""

from __future__ import annotations

import json
import logging

import pytest
from pyspark.ml.classification import LogisticRegression
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from fraudlab import config, registry
from fraudlab import features
from fraudlab.train import pipeline as train_pipeline
from fraudlab.schemas import PREPARED_SCHEMA

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def tiny(spark):
    """A fitted pipeline and its input on a few dozen rows: large travel payments are fraud."""
    rows = []
    for i in range(60):
        fraud = int(i % 6 == 0)
        category = "es_travel" if i % 2 == 0 else "es_food"
        amount = 1500.0 + i if fraud else 20.0 + (i * 7) % 50
        rows.append((f"t{i}", i // 6, f"C{i % 5}", "2", "F", "28007", f"M{i % 2}", "28007", category, amount, fraud))
    df = spark.createDataFrame(rows, "transaction_id string, step int, customer string, age string, gender string, "
                                     "zipcode_ori string, merchant string, zip_merchant string, category string, "
                                     "amount double, fraud int")
    event_time = F.timestamp_add("DAY", F.col("step"), F.lit("2024-01-01").cast("timestamp"))
    prepared = (df.withColumn("event_time", event_time)
                .withColumn("event_month", F.date_format(event_time, "yyyy-MM"))
                .select(*[F.col(f.name).cast(f.dataType) for f in PREPARED_SCHEMA.fields])).cache()
    data = features.model_input(prepared).cache()
    pipeline = train_pipeline.build_pipeline(LogisticRegression(maxIter=10), features.category_stats(data))
    return prepared, data, pipeline.fit(train_pipeline.add_class_weight(data))


def _log(tiny, uri, ap, register=True, model=True):
    prepared, data, pipeline_model = tiny
    metrics = {"test_average_precision": ap, "test_roc_auc": 0.99, "threshold": 0.7, "train_rows": 60,
               "gate": {"passed": True}, "category_stats": features.stats_as_json(features.category_stats(data))}
    return registry.log_training_run(
        pipeline_model if model else None, metrics=metrics, params={"model_type": "LogisticRegression"},
        training_data=prepared, input_sample=data,
        test_pr_table=[{"threshold": 0.9, "precision": 1.0, "recall": 0.5},
                       {"threshold": 0.1, "precision": 0.5, "recall": 1.0}],
        drift={"features": {"amount": {"edges": [1.0], "shares": [0.5, 0.5]}}},
        experiment="tests", tracking_uri=uri, register=register)


def test_registered_champion_loads_back_and_scores_like_the_original(spark, tiny, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    outcome = _log(tiny, uri, ap=0.8)
    assert outcome.registered_version == "1" and outcome.promoted

    loaded, info = registry.load_model(registry.champion_uri(), tracking_uri=uri)
    assert (info["version"], info["run_id"], info["threshold"]) == ("1", outcome.run_id, 0.7)
    assert info["metrics"]["test_average_precision"] == 0.8
    assert info["drift_reference"]["features"]["amount"]["shares"] == [0.5, 0.5]

    _, data, original = tiny
    expected = train_pipeline.predict(original, data).select("transaction_id", "fraud_probability")
    actual = train_pipeline.predict(loaded, data).select("transaction_id", "fraud_probability")
    assertDataFrameEqual(actual, expected, rtol=1e-9)

    # the run holds what the lab promises: metrics, PR curve, data digest, model signature
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(outcome.run_id)
    assert run.data.metrics["test_average_precision"] == 0.8
    assert len(run.data.tags["dataset_digest"]) == 16
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.tags["dataset_digest"]
    assert run.data.tags["dataset_rows"] == "60"
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"pr_curve_test.png", "model_info"} <= artifacts
    mv = client.get_model_version(config.MODEL_NAME, "1")
    assert float(mv.tags["test_average_precision"]) == 0.8
    model_info = mlflow.models.get_model_info(f"models:/{config.MODEL_NAME}/1")
    assert [c["name"] for c in model_info.signature.inputs.to_dict()] == features.MODEL_INPUT_COLUMNS
    # artifacts stay next to the SQLite file, not in the working directory
    assert (tmp_path / "artifacts").is_dir()


def test_champion_alias_moves_only_when_average_precision_improves(tmp_path):
    import mlflow

    uri = registry.configure(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(config.MODEL_NAME)
    promoted = []
    for ap in (0.80, 0.75, 0.80, 0.85):
        version = client.create_model_version(config.MODEL_NAME, source=str(tmp_path)).version
        client.set_model_version_tag(config.MODEL_NAME, version, registry.CHAMPION_METRIC, repr(ap))
        promoted.append(registry.promote_if_better(client, config.MODEL_NAME, str(version), ap))
    assert [p[0] for p in promoted] == [True, False, False, True]
    assert promoted[1][1:] == ("1", 0.80)  # the worse version saw champion v1 and its figure
    assert promoted[3][1:] == ("1", 0.80)
    assert str(client.get_model_version_by_alias(config.MODEL_NAME, config.CHAMPION_ALIAS).version) == "4"


def test_unregistered_runs_leave_the_registry_empty(spark, tiny, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    outcome = _log(tiny, uri, ap=0.9, model=False)
    assert outcome.registered_version is None and not outcome.promoted
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_registered_models() == []
    assert client.get_run(outcome.run_id).data.metrics["test_average_precision"] == 0.9


def test_load_model_from_a_folder_reads_its_metrics_and_drift_files(spark, tiny, tmp_path):
    _, data, pipeline_model = tiny
    folder = tmp_path / "model"
    pipeline_model.write().save(str(folder))
    (folder / "metrics.json").write_text(json.dumps({
        "threshold": 0.42, "test_average_precision": 0.9, "gate": {"passed": True},
        "category_stats": features.stats_as_json(features.category_stats(data))}))
    loaded, info = registry.load_model(str(folder))
    assert info["threshold"] == 0.42
    assert info["drift_reference"] is None
    assert train_pipeline.predict(loaded, data).count() == data.count()


@pytest.mark.parametrize("uri", ["/data/models/fraud_model", "models:/fraud@champion", "models:/fraud/latest"])
@pytest.mark.parametrize("gate", [{"passed": False, "failed": ["min_recall"]}, None])
def test_a_model_without_a_passed_gate_is_refused_unless_named_by_version(uri, gate):
    metrics = {"threshold": 0.5, **({"gate": gate} if gate else {})}
    why = "failed its validation gate (min_recall)" if gate else "carries no validation gate verdict"
    with pytest.raises(registry.GateRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        registry.check_gate_verdict(uri, metrics)


@pytest.mark.parametrize("uri", ["models:/fraud/3", "runs:/0123abcd/model"])
def test_a_model_named_by_version_loads_with_a_warning_whatever_its_gate(uri, caplog):
    with caplog.at_level(logging.WARNING, logger="fraudlab.registry"):
        registry.check_gate_verdict(uri, {"gate": {"passed": False, "failed": ["min_recall"]}})
    assert any("asked for by version" in r.getMessage() for r in caplog.records)


def test_a_model_that_passed_its_gate_loads(caplog):
    with caplog.at_level(logging.WARNING):
        registry.check_gate_verdict("/data/models/fraud_model", {"gate": {"passed": True}})
    assert not caplog.records


def saved_model(tiny, folder, **metrics):
    _, data, pipeline_model = tiny
    pipeline_model.write().save(str(folder))
    (folder / "metrics.json").write_text(json.dumps({
        "threshold": 0.5, "gate": {"passed": True},
        "category_stats": features.stats_as_json(features.category_stats(data)), **metrics}))
    return folder


def test_a_model_whose_saved_feature_sql_was_edited_is_refused(spark, tiny, tmp_path):
    folder = saved_model(tiny, tmp_path / "model")
    metadata = next(folder.glob("stages/0_SQLTransformer*/metadata/part-*"))
    stage = json.loads(metadata.read_text())
    assert stage["paramMap"]["statement"].startswith("SELECT *, coalesce(")
    stage["paramMap"]["statement"] = "SELECT *, 0.0D AS amount_zscore FROM __THIS__ WHERE amount < 1000"
    metadata.write_text(json.dumps(stage) + "\n")
    (metadata.parent / f".{metadata.name}.crc").unlink()  # as an editor would: else Hadoop's checksum stops the read
    with pytest.raises(registry.TamperedModel, match="not the statement fraudlab builds"):
        registry.load_model(str(folder))


@pytest.mark.parametrize("stats", [None, {"es_food": {"mean": "1; DROP TABLE x", "std": 1.0}}])
def test_a_model_whose_statistics_are_missing_or_not_numbers_is_refused(spark, tiny, tmp_path, stats):
    folder = saved_model(tiny, tmp_path / "model", category_stats=stats)
    with pytest.raises(registry.TamperedModel, match="cannot be checked"):
        registry.load_model(str(folder))


def test_a_model_whose_statistics_were_edited_is_refused(spark, tiny, tmp_path):
    folder = saved_model(tiny, tmp_path / "model")
    metrics = json.loads((folder / "metrics.json").read_text())
    category = sorted(metrics["category_stats"])[0]
    metrics["category_stats"][category]["mean"] += 1.0
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(registry.TamperedModel, match="not the statement fraudlab builds"):
        registry.load_model(str(folder))
