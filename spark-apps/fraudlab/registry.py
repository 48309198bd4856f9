"""MLflow for the lab: log a training run, register the model, keep the champion alias honest, load it back.

A training run logs its parameters, metrics, the test PR curve (PNG), a digest
of the training data, feature importances (tree models), ``metrics.json`` and
``drift_reference.json`` (under ``model_info/``), and the Spark ``PipelineModel``
with a signature and an input example. When asked to, it registers the model as
:data:`fraudlab.config.MODEL_NAME` and moves the alias
:data:`fraudlab.config.CHAMPION_ALIAS` to the new version only when its test
average precision beats the current champion's.

:func:`load_model` is what batch scoring and the stream classifier call: it takes
a saved model folder (``data/models/fraud_model``, ``s3://...``) or a registry
URI (``models:/fraudlab_fraud_classifier@champion``) and returns the
``PipelineModel`` with the training metrics, threshold and drift reference.

The tracking store defaults to :data:`fraudlab.config.MLFLOW_TRACKING_URI` (a
SQLite file under ``data/``); for a ``sqlite:///`` store the artifacts go into
an ``artifacts`` folder next to the database file, never into the working
directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fraudlab import config, features, io
from fraudlab.logs import first_line

log = logging.getLogger(__name__)

#: The model's artifact path inside a run, and where the JSON side files go.
MODEL_ARTIFACT = "model"
INFO_ARTIFACT_DIR = "model_info"
METRICS_FILE = "metrics.json"
DRIFT_FILE = "drift_reference.json"

#: The metric that decides whether a new version takes the champion alias.
CHAMPION_METRIC = "test_average_precision"

#: What the logged model needs at serving time; explicit so MLflow does not start a
#: second Spark to infer it (34 s instead of 6 s, STACK.md).
PIP_REQUIREMENTS = ["pyspark==4.2.0", "mlflow==3.17.2", "numpy", "pandas<3"]


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`log_training_run` did."""

    run_id: str
    experiment_id: str
    model_uri: str | None
    registered_version: str | None
    promoted: bool
    previous_champion_version: str | None
    previous_champion_metric: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- tracking setup


def artifact_root(tracking_uri: str) -> str | None:
    """Artifact folder for experiments created in a ``sqlite:///`` store: ``<db folder>/artifacts``."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = Path(tracking_uri[len("sqlite:///"):])
    return (db_path.parent / "artifacts").resolve().as_uri()


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow's tracking and registry at ``tracking_uri`` (default: the lab's) and return it."""
    import mlflow

    uri = tracking_uri or config.MLFLOW_TRACKING_URI
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (with an artifact folder beside a SQLite store) if needed."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    return mlflow.create_experiment(name, artifact_location=artifact_root(tracking_uri))


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server or store cannot be used (down, refused, misnamed)."""


def check_tracking(experiment: str, tracking_uri: str) -> str:
    """:func:`ensure_experiment` as a start-up check: the experiment's id, or :class:`TrackingUnavailable`
    with one sentence. ``fit_model`` asks before it fits, so an MLflow server that is down costs
    seconds, not a whole search, and nothing is written or registered."""
    configure(tracking_uri)
    try:
        return ensure_experiment(experiment, tracking_uri)
    except Exception as err:  # noqa: BLE001  (MlflowException, requests' errors, sqlite errors)
        raise TrackingUnavailable(f"MLflow at {tracking_uri} cannot be used ({first_line(err)})") from None


# --------------------------------------------------------------------------- run contents


def dataset_digest(df: DataFrame) -> dict[str, Any]:
    """A content digest of a prepared data set: row count, frauds and an order-free hash (an action).

    Equal data gives an equal digest whatever its partitioning or file layout.
    """
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("fraud")).alias("frauds"),
        F.sum(F.xxhash64("transaction_id", "step", "amount", "fraud").cast("decimal(38,0)")).alias("hash_sum"),
        F.min("step").alias("min_step"),
        F.max("step").alias("max_step"),
    ).first()
    text = f"{row['rows']}|{row['frauds']}|{row['hash_sum']}|{row['min_step']}|{row['max_step']}"
    return {
        "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        "rows": int(row["rows"]),
        "frauds": int(row["frauds"] or 0),
        "min_step": row["min_step"],
        "max_step": row["max_step"],
    }


def _dataset_entity(df: DataFrame, path: str | None, digest: str):
    """MLflow's record of the training data: source, schema and our content digest.

    ``mlflow.data.from_spark`` would do, but logging it runs a Python pass over
    every row to estimate a row count; the digest already carries the exact one.
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.spark_dataset import SparkDataset
    from mlflow.data.spark_dataset_source import SparkDatasetSource

    source = SparkDatasetSource(path=path or "<in-memory DataFrame>")
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values; ours never do.
        warnings.simplefilter("ignore", UserWarning)
        schema = SparkDataset(df=df, source=source, digest=digest).schema
    return MetaDataset(source=source, name="banksim_prepared", digest=digest, schema=schema)


def pr_curve_figure(table: list[dict[str, float]], title: str):
    """A matplotlib figure of the precision-recall curve from :func:`fraudlab.train.metrics.threshold_table` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    recall = [0.0, *[r["recall"] for r in table]]
    precision = [table[0]["precision"] if table else 1.0, *[r["precision"] for r in table]]
    ax.plot(recall, precision, drawstyle="steps-post")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def numeric_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics dict, flattened with ``_`` (booleans and strings left out)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            flat[name] = float(value)
        elif isinstance(value, dict):
            flat.update(numeric_metrics(value, prefix=f"{name}_"))
    return flat


def _signature_and_example(model: PipelineModel, sample: DataFrame):
    from mlflow.models import infer_signature

    example = sample.select(*features.MODEL_INPUT_COLUMNS).limit(5).toPandas()
    prediction = model.transform(sample.select(*features.MODEL_INPUT_COLUMNS).limit(5)).select("prediction").toPandas()
    return infer_signature(example, prediction), example


# --------------------------------------------------------------------------- registry


def champion(client, name: str = config.MODEL_NAME, alias: str = config.CHAMPION_ALIAS):
    """The model version holding ``alias``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metric(client, version, metric: str = CHAMPION_METRIC) -> float | None:
    """``metric`` of a model version: its tag if set, else the metric of the run that made it."""
    if metric in (version.tags or {}):
        return float(version.tags[metric])
    if version.run_id:
        value = client.get_run(version.run_id).data.metrics.get(metric)
        return None if value is None else float(value)
    return None


def promote_if_better(client, name: str, version: str, value: float, alias: str = config.CHAMPION_ALIAS,
                      metric: str = CHAMPION_METRIC) -> tuple[bool, str | None, float | None]:
    """Give ``alias`` to ``version`` when ``value`` beats the current holder's ``metric`` (or none holds it).

    Returns ``(promoted, previous version, previous value)``. A tie keeps the champion.
    """
    current = champion(client, name, alias)
    if current is None:
        client.set_registered_model_alias(name, alias, version)
        return True, None, None
    previous = version_metric(client, current, metric)
    if previous is None or value > previous:
        client.set_registered_model_alias(name, alias, version)
        return True, str(current.version), previous
    return False, str(current.version), previous


def log_training_run(
    model: PipelineModel | None,
    *,
    metrics: dict[str, Any],
    params: dict[str, Any],
    training_data: DataFrame,
    input_sample: DataFrame | None = None,
    test_pr_table: list[dict[str, float]] | None = None,
    importances: dict[str, float] | None = None,
    drift: dict[str, Any] | None = None,
    data_path: str | None = None,
    experiment: str = "fraudlab",
    tracking_uri: str | None = None,
    register: bool = True,
    model_name: str = config.MODEL_NAME,
    alias: str = config.CHAMPION_ALIAS,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Log one training run; log the model when given, and register it when ``register``.

    ``metrics`` is the content of ``metrics.json`` (its numbers become MLflow
    metrics); ``input_sample`` holds model-input rows for the signature and the
    input example. The champion alias moves only when the new version's
    ``test_average_precision`` is higher than the champion's.
    """
    import mlflow
    import mlflow.spark

    uri = configure(tracking_uri)
    experiment_id = ensure_experiment(experiment, uri)
    digest = dataset_digest(training_data)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags({"app": "fit_model", "dataset_digest": digest["digest"],
                         "dataset_rows": str(digest["rows"]), "dataset_frauds": str(digest["frauds"]), **(tags or {})})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(numeric_metrics({k: v for k, v in metrics.items()
                                            if k not in ("params", "search", "category_stats")}))
        mlflow.log_input(_dataset_entity(training_data, data_path, digest["digest"]), context="training")
        mlflow.log_dict(metrics, f"{INFO_ARTIFACT_DIR}/{METRICS_FILE}")
        if drift is not None:
            mlflow.log_dict(drift, f"{INFO_ARTIFACT_DIR}/{DRIFT_FILE}")
        if importances:
            mlflow.log_dict(importances, "feature_importances.json")
        if test_pr_table:
            fig = pr_curve_figure(test_pr_table, f"test PR curve (AP {metrics.get('test_average_precision', 0):.3f})")
            mlflow.log_figure(fig, "pr_curve_test.png")
            _close(fig)

        model_uri = version = None
        promoted, previous_version, previous_value = False, None, None
        if model is not None:
            signature = example = None
            if input_sample is not None:
                signature, example = _signature_and_example(model, input_sample)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the same integer-column hint
                info = mlflow.spark.log_model(
                    model,
                    artifact_path=MODEL_ARTIFACT,
                    registered_model_name=model_name if register else None,
                    signature=signature,
                    input_example=example,
                    pip_requirements=PIP_REQUIREMENTS,
                )
            model_uri = info.model_uri
            if register:
                version = str(info.registered_model_version)
                value = float(metrics[CHAMPION_METRIC])
                client.set_model_version_tag(model_name, version, CHAMPION_METRIC, repr(value))
                if metrics.get("threshold") is not None:
                    client.set_model_version_tag(model_name, version, "threshold", repr(float(metrics["threshold"])))
                promoted, previous_version, previous_value = promote_if_better(
                    client, model_name, version, value, alias=alias)
                mlflow.set_tag("champion", str(promoted).lower())
                if promoted:
                    log.info("%s version %s is now @%s (%s %.4f, previous %s)", model_name, version, alias,
                             CHAMPION_METRIC, value, previous_value)
                else:
                    log.info("%s version %s registered but not promoted: %s %.4f <= champion v%s's %.4f",
                             model_name, version, CHAMPION_METRIC, value, previous_version, previous_value)

    return RunOutcome(run.info.run_id, experiment_id, model_uri, version, promoted,
                      previous_version, previous_value)


# --------------------------------------------------------------------------- loading


def champion_uri(name: str = config.MODEL_NAME, alias: str = config.CHAMPION_ALIAS) -> str:
    """``models:/<name>@<alias>``."""
    return f"models:/{name}@{alias}"


def _registry_version(client, uri: str):
    """The model version a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` URI points at."""
    ref = uri[len("models:/"):]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = ref.partition("/")
    if version in ("", "latest"):
        versions = client.search_model_versions(f"name='{name}'")
        return max(versions, key=lambda v: int(v.version))
    return client.get_model_version(name, version)


def _run_info(client, run_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fraudlab-model-info-") as tmp:
        for key, filename in (("metrics", METRICS_FILE), ("drift_reference", DRIFT_FILE)):
            try:
                local = client.download_artifacts(run_id, f"{INFO_ARTIFACT_DIR}/{filename}", tmp)
            except Exception:  # noqa: BLE001  (an older run without the file)
                info[key] = None
                continue
            info[key] = json.loads(Path(local).read_text())
    return info


def _path_info(spark: SparkSession, path: str) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key, filename in (("metrics", METRICS_FILE), ("drift_reference", DRIFT_FILE)):
        file_path = f"{path.rstrip('/')}/{filename}"
        info[key] = io.read_json(spark, file_path) if io.exists(spark, file_path) else None
    return info


def load_model(uri: str, tracking_uri: str | None = None) -> tuple[PipelineModel, dict[str, Any]]:
    """Load the fraud model from a saved folder or a ``models:/`` / ``runs:/`` URI.

    Returns ``(PipelineModel, info)`` where ``info`` has ``source``, ``threshold``
    (float or ``None``), ``metrics`` (``metrics.json`` or ``None``),
    ``drift_reference`` (or ``None``), ``version`` and ``run_id`` (registry URIs
    only). Needs an active SparkSession. Raises :class:`GateRefused` before loading anything when
    the model's gate verdict is failed or missing (:func:`check_gate_verdict`), and
    :class:`TamperedModel` when its SQL feature stage is not the lab's (:func:`check_feature_sql`).
    """
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("load_model needs an active SparkSession")
    info: dict[str, Any] = {"source": uri, "version": None, "run_id": None}
    if uri.startswith(("models:/", "runs:/")):
        import mlflow
        import mlflow.spark

        tracking = configure(tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        if uri.startswith("models:/"):
            version = _registry_version(client, uri)
            info["version"], info["run_id"] = str(version.version), version.run_id
        else:
            info["run_id"] = uri[len("runs:/"):].split("/", 1)[0]
        info.update(_run_info(client, info["run_id"]) if info["run_id"] else {"metrics": None, "drift_reference": None})
        check_gate_verdict(uri, info.get("metrics"))
        pipeline = mlflow.spark.load_model(uri, dst_path=_shared_download_dir(spark, info["run_id"]))
    else:
        path = os.fspath(uri)
        info.update(_path_info(spark, path))
        check_gate_verdict(uri, info.get("metrics"))
        pipeline = PipelineModel.load(path)
    check_feature_sql(uri, pipeline, info.get("metrics"))
    metrics = info.get("metrics") or {}
    info["threshold"] = None if metrics.get("threshold") is None else float(metrics["threshold"])
    return pipeline, info


class GateRefused(ValueError):
    """The model's training-time gate verdict is failed or missing, and it was not named by version."""


def check_gate_verdict(uri: str, metrics: dict[str, Any] | None) -> None:
    """Refuse to load a model whose validation gate failed or left no verdict, unless named explicitly.

    A folder or a registry alias (``@champion``) must carry ``"gate": {"passed": true}`` in its
    ``metrics.json``; a registered version (``models:/NAME/3``) or a run (``runs:/ID/...``) asked for
    by number loads with a warning, so an analyst can still inspect it.
    """
    gate = (metrics or {}).get("gate") or {}
    if gate.get("passed") is True:
        return
    if gate.get("passed") is False:
        why = f"failed its validation gate ({', '.join(gate.get('failed') or []) or 'see its metrics.json'})"
    else:
        why = "carries no validation gate verdict (no metrics.json with a gate)"
    if _named_by_version(uri):
        log.warning("model %s %s: loaded because it was asked for by version", uri, why)
        return
    raise GateRefused(f"model {uri} {why}: refusing to load it; fit one that passes, or name a registered "
                      "version (models:/NAME/VERSION) to load it anyway")


class TamperedModel(ValueError):
    """A model's SQL feature stage is not the statement the lab builds from its training statistics."""


def check_feature_sql(uri: str, pipeline: PipelineModel, metrics: dict[str, Any] | None) -> None:
    """Refuse a model whose ``SQLTransformer`` stages run anything but the lab's z-score statement.

    A ``SQLTransformer`` runs whatever SQL its saved folder holds, at scoring time, with the scoring
    job's rights. The statement is rebuilt from the ``category_stats`` of the model's ``metrics.json``
    (:func:`fraudlab.features.zscore_statement`: numbers and quoted category names in a fixed text), and
    the saved one must equal it, so editing either file cannot smuggle other SQL in.
    """
    from pyspark.ml.feature import SQLTransformer

    sql_stages = [stage for stage in pipeline.stages if isinstance(stage, SQLTransformer)]
    if not sql_stages:
        return
    try:
        expected = features.zscore_statement(features.stats_from_json((metrics or {}).get("category_stats")))
    except ValueError as err:
        raise TamperedModel(f"model {uri}: its SQL feature stage cannot be checked ({err} in its "
                            "metrics.json): refusing to load it") from None
    if len(sql_stages) != 1 or sql_stages[0].getStatement() != expected:
        raise TamperedModel(f"model {uri}: its SQL feature stage is not the statement fraudlab builds from "
                            "its training statistics (the folder was edited?): refusing to load it")


def _named_by_version(uri: str) -> bool:
    if uri.startswith("runs:/"):
        return True
    if not uri.startswith("models:/") or "@" in uri:
        return False
    return uri[len("models:/"):].partition("/")[2].isdigit()


def _shared_download_dir(spark: SparkSession, run_id: str | None) -> str | None:
    """Where a registry model is downloaded so that every executor can read it, or None (MLflow's temp).

    On a local master the driver's temporary folder will do. On a cluster whose default file system
    is the local one (a standalone cluster sharing a volume, as the compose stack does), MLflow would
    download to the driver's /tmp, which the executors on other hosts cannot see: the model is put
    under the lab's data folder instead, at the same path on every host. With HDFS or S3 as the
    default file system MLflow copies the model there itself.
    """
    if spark.sparkContext.master.startswith("local"):
        return None
    default_fs = spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
    if not default_fs.startswith("file:"):
        return None
    folder = config.DATA_DIR / "models" / "registry-downloads" / (run_id or "latest")
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="model-", dir=folder)


class ModelLoadError(ValueError):
    """The model cannot be scored with: it does not load, or it has no usable decision threshold."""


def load_scoring_model(uri: str, tracking_uri: str | None = None,
                       threshold: float | None = None) -> tuple[PipelineModel, dict[str, Any], float]:
    """:func:`load_model` plus the decision threshold to score with: ``threshold`` when given, else the
    one chosen at training. Raises :class:`ModelLoadError` (one sentence) when there is none or it is
    outside (0, 1]; the apps log it and exit 2.
    """
    try:
        pipeline, info = load_model(uri, tracking_uri)
    except (GateRefused, TamperedModel) as err:
        raise ModelLoadError(str(err)) from None
    except Exception as err:  # noqa: BLE001  (any load failure means there is nothing to score with)
        raise ModelLoadError(f"cannot load model {uri}: {first_line(err)}") from None
    chosen = threshold if threshold is not None else info.get("threshold")
    if chosen is None:
        raise ModelLoadError(f"model {uri} carries no decision threshold (no metrics.json); pass --threshold")
    if not 0.0 < chosen <= 1.0:
        raise ModelLoadError(f"the decision threshold must lie in (0, 1], got {chosen}")
    return pipeline, info, float(chosen)


def model_version(info: dict[str, Any]) -> str:
    """The registry version, else the version the saved folder was registered as, else its path.

    ``info`` is what :func:`load_model` returns; batch and stream scoring write this into ``model_version``.
    """
    mlflow_info = (info.get("metrics") or {}).get("mlflow") or {}
    return str(info.get("version") or mlflow_info.get("registered_version") or info["source"])
