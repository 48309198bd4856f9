"""What the model notebook computes from collected figures: the threshold trade-off, the drift table, feature weights.

:func:`alerts_per_day_vs_recall`, :func:`operating_point` and
:func:`recall_levels` turn :mod:`fraudlab.train.metrics` output into alerts
per day; :func:`drift_table` reads score_claims' ``_metrics.json``;
:func:`feature_weights` runs a small Spark job on the fitted model (an
action, said so in its docstring).

May touch: plain Python and pandas; Spark only in :func:`feature_weights`.
No figures, no services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fraudlab import drift as fdrift
from fraudlab.train import pipeline as train_pipeline


def alerts_per_day_vs_recall(table: Sequence[Mapping[str, float]], days: int) -> pd.DataFrame:
    """The threshold trade-off: for each threshold, the recall reached and the alerts it costs per day.

    ``table`` is :func:`fraudlab.train.metrics.threshold_table` output (thresholds
    falling, recall rising) over ``days`` days of transactions. Columns:
    ``threshold``, ``recall``, ``precision``, ``flagged``, ``alerts_per_day``.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    frame = pd.DataFrame(list(table), columns=["threshold", "recall", "precision", "flagged"])
    frame["alerts_per_day"] = frame["flagged"] / float(days)
    return frame


def operating_point(confusion: Mapping[str, float], days: int) -> dict[str, float]:
    """The model's own threshold as a point of the trade-off: :func:`fraudlab.train.metrics.confusion_at` plus ``alerts_per_day``."""
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    return {**confusion, "alerts_per_day": (confusion["tp"] + confusion["fp"]) / float(days)}


def recall_levels(tradeoff: pd.DataFrame, levels: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)) -> pd.DataFrame:
    """For each recall level, the highest threshold that reaches it and what it costs.

    ``tradeoff`` is :func:`alerts_per_day_vs_recall` output. A level no
    threshold reaches is left out. Columns: ``recall_at_least``,
    ``threshold``, ``recall``, ``precision``, ``alerts_per_day``.
    """
    rows = []
    for level in levels:
        reached = tradeoff[tradeoff["recall"] >= level - 1e-12]
        if reached.empty:
            continue
        best = reached.loc[reached["threshold"].idxmax()]
        rows.append({"recall_at_least": level, "threshold": best["threshold"], "recall": best["recall"],
                     "precision": best["precision"], "alerts_per_day": best["alerts_per_day"]})
    return pd.DataFrame(rows, columns=["recall_at_least", "threshold", "recall", "precision", "alerts_per_day"])


def drift_table(scoring_metrics: Mapping[str, Any]) -> pd.DataFrame:
    """``feature``, ``psi``, ``status`` from score_claims' ``_metrics.json``, largest PSI first."""
    drift = scoring_metrics.get("drift") or {}
    statuses = scoring_metrics.get("drift_status") or {}
    rows = [{"feature": name, "psi": float(psi), "status": statuses.get(name, fdrift.psi_status(float(psi)))}
            for name, psi in drift.items()]
    frame = pd.DataFrame(rows, columns=["feature", "psi", "status"])
    return frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)


def feature_weights(pipeline_model: PipelineModel, df: DataFrame) -> tuple[pd.DataFrame, str]:
    """How much each model feature weighs, largest first, and what the weight is (an action).

    A tree model gives its feature importances. A linear model's raw
    coefficients are not comparable (the features are not scaled), so each
    coefficient is multiplied by its feature's standard deviation on ``df``
    (model-input rows): the change in log-odds for a one-standard-deviation
    change of the feature. Other models give an empty frame. Returns
    ``(frame with feature and weight, description of the weight)``.
    """
    classifier = pipeline_model.stages[-1]
    if hasattr(classifier, "featureImportances"):
        weights = train_pipeline.feature_importances(pipeline_model, df)
        kind = "feature importance"
    elif hasattr(classifier, "coefficients"):
        from pyspark.ml.stat import Summarizer

        features = PipelineModel(stages=pipeline_model.stages[:-1]).transform(df)
        std = features.select(Summarizer.std(F.col(train_pipeline.FEATURES_COL)).alias("std")).first()["std"].toArray()
        names = train_pipeline.feature_names(pipeline_model, df)
        coefficients = classifier.coefficients.toArray()
        weights = {name: abs(float(c)) * float(s) for name, c, s in zip(names, coefficients, std)}
        kind = "|coefficient| x feature std"
    else:
        return pd.DataFrame(columns=["feature", "weight"]), "none"
    frame = pd.DataFrame(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])), columns=["feature", "weight"])
    return frame, kind
