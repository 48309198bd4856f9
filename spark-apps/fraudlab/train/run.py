"""One training run, end to end: split, search, refit, evaluate, gate, write, register.

``fit_model.py`` parses its flags into :class:`FitOptions` and calls :func:`run`; this module
holds what the run does and the layout of ``metrics.json`` (test figures, validation, search,
category statistics, importances, timings, gate, MLflow outcome).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fraudlab import config, drift, io
from fraudlab.io import claims
from fraudlab import features
from fraudlab.train import metrics as train_metrics
from fraudlab.train import pipeline as train_pipeline
from fraudlab.train import search as train_search
from fraudlab.train import split as train_split
from fraudlab.train.gate import check_gate

#: The app's logger: the run's lines read "fit_model: ..." as the app's own.
log = logging.getLogger("fit_model")

#: Feature importances kept in metrics.json (all of them go to MLflow).
TOP_IMPORTANCES = 20


@dataclass(frozen=True)
class FitOptions:
    """The per-run values of a training run: the flags of ``fit_model.py`` but the gate."""

    input: str = str(config.PREPARED_DIR)
    model_dir: str = str(config.MODEL_DIR)
    test_from_step: int | None = None
    validation_share: float = train_split.DEFAULT_HOLDOUT_SHARE
    search: str = "fast"
    parallelism: int = 2
    seed: int = 42
    tracking_uri: str = config.MLFLOW_TRACKING_URI
    experiment: str = "fraudlab"
    model_name: str = config.MODEL_NAME
    no_register: bool = False
    no_tracking: bool = False


def run(spark: SparkSession, args: FitOptions, thresholds: dict[str, float]) -> int:
    """Fit, evaluate, gate, write ``model_dir`` and log to MLflow; the exit code (0, 1 gate failed, 2 bad split).

    The caller owns the session. ``args`` holds the flags of ``fit_model.py``.
    """
    started = time.perf_counter()
    problem = io.overlap(spark, {"--input": args.input}, {"--model-dir": args.model_dir})
    if problem:
        log.error("%s", problem)
        return 2
    if not io.exists(spark, args.input):
        log.error("--input %s: no prepared data there (run prepare_data.py first)", args.input)
        return 2
    try:
        prepared = claims.read_prepared(spark, args.input)
    except ValueError as err:
        log.error("--input %s", err)
        return 2
    if not args.no_tracking:
        from fraudlab import registry

        try:
            registry.check_tracking(args.experiment, args.tracking_uri)
        except registry.TrackingUnavailable as err:
            log.error("%s: nothing fitted, written or registered (start it, or pass --no-tracking)", err)
            return 1
    # Customer history looks only at earlier steps, so it is computed once over all rows:
    # a test row sees the training-period history it would see when scored.
    data = features.model_input(prepared).persist()
    try:
        return _fit_gate_write(spark, args, thresholds, prepared, data, started)
    finally:
        data.unpersist()


def _fit_gate_write(spark: SparkSession, args: FitOptions, thresholds: dict[str, float],
                    prepared: DataFrame, data: DataFrame, started: float) -> int:
    min_step, max_step = train_split.step_range(data)
    test_from = args.test_from_step if args.test_from_step is not None else (
        train_split.default_split_step(min_step, max_step))
    if not min_step < test_from <= max_step:
        log.error("--test-from-step %d leaves no train or no test rows (steps %d..%d)", test_from, min_step, max_step)
        return 2
    validation_from = train_split.default_split_step(min_step, test_from - 1, args.validation_share)
    train, test = train_split.temporal_split(data, test_from)
    early, validation = train_split.temporal_split(train, validation_from)
    log.info("steps %d..%d: early train < %d <= validation < %d <= test", min_step, max_step,
             validation_from, test_from)

    search_started = time.perf_counter()
    results = train_search.select_model(early, validation, train_search.search_candidates(args.search, args.seed),
                                  parallelism=args.parallelism)
    search_seconds = time.perf_counter() - search_started
    for result in results:
        log.info("candidate %s %s, class weight strength %s: validation AP %.4f", result.model_type,
                 _short(result.params), result.class_weight_strength, result.validation_average_precision)
    best = results[0]
    # The threshold is the best-F1 point of the early-fitted winner on the validation
    # steps: after the refit those steps are training data, and test must stay unseen.
    threshold = best.validation_threshold["threshold"]

    refit_started = time.perf_counter()
    stats = features.category_stats(train)
    weighted_train = train_pipeline.add_class_weight(train, strength=best.class_weight_strength)
    pipeline_model = train_pipeline.build_pipeline(best.estimator, stats).fit(weighted_train)
    refit_seconds = time.perf_counter() - refit_started

    test_scored = train_pipeline.predict(pipeline_model, test).select("fraud", train_pipeline.PROBABILITY_COL).cache()
    test_figures = train_metrics.evaluate(test_scored, threshold)
    test_table = train_metrics.threshold_table(test_scored)
    test_scored.unpersist()
    counts = train.agg(F.count(F.lit(1)).alias("rows"), F.sum("fraud").alias("frauds")).first()
    importances = train_pipeline.feature_importances(pipeline_model, test)
    reference = drift.drift_reference(pipeline_model.stages[0].transform(train))

    metrics = {
        "input": args.input,
        "model_type": best.model_type,
        "params": best.params,
        "class_weight_strength": best.class_weight_strength,
        "threshold": threshold,
        "test_average_precision": test_figures["average_precision"],
        "test_roc_auc": test_figures["roc_auc"],
        "test_precision": test_figures["precision"],
        "test_recall": test_figures["recall"],
        "test_f1": test_figures["f1"],
        "test_confusion": {k: test_figures[k] for k in ("tp", "fp", "fn", "tn")},
        "test_rows": test_figures["rows"],
        "test_frauds": test_figures["tp"] + test_figures["fn"],
        "train_rows": int(counts["rows"]),
        "train_frauds": int(counts["frauds"] or 0),
        "steps": {"min": min_step, "max": max_step, "validation_from": validation_from, "test_from": test_from},
        "validation": {
            "average_precision": best.validation_average_precision,
            "roc_auc": best.validation_roc_auc,
            "precision": best.validation_threshold["precision"],
            "recall": best.validation_threshold["recall"],
            "f1": best.validation_threshold["f1"],
        },
        "search": {"mode": args.search, "parallelism": args.parallelism,
                   "candidates": [r.summary() for r in results]},
        "category_stats": features.stats_as_json(stats),
        # a list, largest first: write_json sorts object keys
        "feature_importances": [{"feature": name, "importance": value}
                                for name, value in list(importances.items())[:TOP_IMPORTANCES]],
        "timings_s": {"search": round(search_seconds, 1), "refit": round(refit_seconds, 1)},
    }
    checks = check_gate(metrics, thresholds)
    failed = [c for c in checks if not c.passed]
    metrics["gate"] = {"thresholds": thresholds, "checks": [c.as_dict() for c in checks],
                       "passed": not failed, "failed": [c.rule for c in failed]}
    for check in failed:
        log.error("gate failed: %s = %s, needs %s %s (off by %s)", check.metric, _fmt(check.value),
                  ">=" if check.rule.startswith("min_") else "<=", check.threshold, _fmt(check.margin))

    # A model that failed its gate never lands where the champion's folder is: it goes beside it,
    # where loading refuses it (registry.load_model), and the earlier model stays as it was.
    target = args.model_dir if not failed else rejected_dir(args.model_dir)
    with io.publishing(spark, target) as staging:
        pipeline_model.write().overwrite().save(staging)
        io.write_json(spark, f"{staging}/drift_reference.json", reference)
        log.info("%s: test AP %.4f, ROC AUC %.4f, at threshold %.4f precision %.3f recall %.3f F1 %.3f",
                 best.model_type, metrics["test_average_precision"], metrics["test_roc_auc"], threshold,
                 metrics["test_precision"], metrics["test_recall"], metrics["test_f1"])
        metrics["timings_s"]["total"] = round(time.perf_counter() - started, 1)
        if not args.no_tracking:
            metrics["mlflow"] = _track(args, metrics, pipeline_model, failed, best, prepared, test, test_from,
                                       validation_from, test_table, importances, reference)
        io.write_json(spark, f"{staging}/metrics.json", metrics)
    if failed:
        log.error("model not registered: gate failed on %s; it is in %s, %s is unchanged",
                  ", ".join(c.rule for c in failed), target, args.model_dir)
        return 1
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


def rejected_dir(model_dir: str) -> str:
    """Where a model that failed its gate is written, beside ``model_dir``: ``<model_dir>_rejected``."""
    return f"{model_dir.rstrip('/')}_rejected"


def _track(args: FitOptions, metrics: dict, pipeline_model, failed: list, best, prepared: DataFrame,
           test: DataFrame, test_from: int, validation_from: int, test_table, importances, reference) -> dict:
    """Log the run to MLflow (the model and its registration only when the gate passed); ``metrics["mlflow"]``."""
    from fraudlab import registry

    outcome = registry.log_training_run(
        pipeline_model if not failed else None,
        metrics=metrics,
        params={"model_type": best.model_type, "search": args.search, "test_from_step": test_from,
                "validation_from_step": validation_from, "threshold": metrics["threshold"],
                "class_weight_strength": best.class_weight_strength,
                **{f"clf_{k}": v for k, v in best.params.items()}},
        training_data=prepared.where(F.col("step") < test_from),
        input_sample=test,
        test_pr_table=test_table,
        importances=importances,
        drift=reference,
        data_path=args.input,
        experiment=args.experiment,
        tracking_uri=args.tracking_uri,
        register=not args.no_register and not failed,
        model_name=args.model_name,
        tags={"gate_passed": str(not failed).lower(), "search": args.search},
    )
    log.info("MLflow run %s, registered version %s, champion moved: %s", outcome.run_id,
             outcome.registered_version, outcome.promoted)
    return {"tracking_uri": args.tracking_uri, "experiment": args.experiment, **outcome.as_dict()}


def _short(params: dict) -> str:
    keys = ("regParam", "elasticNetParam", "maxIter", "maxDepth", "stepSize", "subsamplingRate")
    return ", ".join(f"{k}={params[k]}" for k in keys if k in params)


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4f}"
