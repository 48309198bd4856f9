"""Thresholds and metrics of a scored slice: the PR table, the chosen threshold, MLlib's evaluators.

Every function takes rows with ``fraud`` and ``fraud_probability`` and runs Spark jobs (actions).
"""

from __future__ import annotations

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fraudlab.train.pipeline import LABEL_COL, PROBABILITY_COL

#: Probabilities are grouped on this grid to find thresholds and draw the PR curve.
THRESHOLD_GRID = 10_000


def threshold_table(scored: DataFrame, grid: int = THRESHOLD_GRID) -> list[dict[str, float]]:
    """Precision, recall and F1 for every threshold on a ``1 / grid`` grid that changes a decision (an action).

    ``scored`` has ``fraud`` and ``fraud_probability``; a row is flagged when its
    probability is >= the threshold. Rows come back by decreasing threshold,
    recall increasing, which is also the PR curve.
    """
    edge = F.floor(F.col(PROBABILITY_COL) * grid) / grid
    counts = (
        scored.groupBy(edge.alias("threshold"))
        .agg(F.sum(F.col(LABEL_COL)).alias("pos"), F.count(F.lit(1)).alias("n"))
        .orderBy(F.col("threshold").desc())
        .collect()
    )
    total_pos = sum(int(r["pos"]) for r in counts)
    table, tp, flagged = [], 0, 0
    for r in counts:
        tp += int(r["pos"])
        flagged += int(r["n"])
        precision = tp / flagged if flagged else 0.0
        recall = tp / total_pos if total_pos else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table.append({"threshold": float(r["threshold"]), "precision": precision, "recall": recall,
                      "f1": f1, "flagged": flagged, "true_positives": tp})
    return table


def choose_threshold(table: list[dict[str, float]]) -> dict[str, float]:
    """The row of :func:`threshold_table` with the highest F1 (the higher threshold on a tie).

    Call it on the *validation* slice's table: a threshold picked on test would
    make the test figures optimistic.
    """
    if not table:
        raise ValueError("no scored rows to choose a threshold from")
    return max(table, key=lambda row: (row["f1"], row["threshold"]))


def confusion_at(scored: DataFrame, threshold: float) -> dict[str, float]:
    """Counts and precision/recall/F1 when flagging ``fraud_probability >= threshold`` (an action)."""
    flagged = F.col(PROBABILITY_COL) >= F.lit(threshold)
    is_fraud = F.col(LABEL_COL) == 1
    row = scored.agg(
        F.count_if(flagged & is_fraud).alias("tp"),
        F.count_if(flagged & ~is_fraud).alias("fp"),
        F.count_if(~flagged & is_fraud).alias("fn"),
        F.count_if(~flagged & ~is_fraud).alias("tn"),
    ).first()
    tp, fp, fn, tn = (int(row[k]) for k in ("tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _evaluator(metric: str) -> BinaryClassificationEvaluator:
    # numBins=0: no down-sampling of the curve, so the area is exact for our sizes.
    return BinaryClassificationEvaluator(rawPredictionCol=PROBABILITY_COL, labelCol=LABEL_COL,
                                         metricName=metric, numBins=0)


def average_precision(scored: DataFrame) -> float:
    """MLlib's ``areaUnderPR`` of ``fraud_probability`` against ``fraud`` (an action)."""
    return float(_evaluator("areaUnderPR").evaluate(scored))


def roc_auc(scored: DataFrame) -> float:
    """MLlib's ``areaUnderROC`` of ``fraud_probability`` against ``fraud`` (an action)."""
    return float(_evaluator("areaUnderROC").evaluate(scored))


def evaluate(scored: DataFrame, threshold: float) -> dict[str, float]:
    """Average precision, ROC AUC and the figures at ``threshold`` of scored rows (actions).

    ``scored`` should be cached: it is read three times.
    """
    return {"average_precision": average_precision(scored), "roc_auc": roc_auc(scored),
            **confusion_at(scored, threshold), "rows": int(scored.count())}
