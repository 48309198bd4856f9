"""The MLlib side of the lab: model input, the pipeline, the temporal split, thresholds and metrics.

One pipeline definition serves training, batch scoring and the stream classifier:

1. :func:`model_input` adds the customer-history features and ``log_amount`` to
   prepared rows (the stream computes the same columns from its own state);
2. :func:`build_pipeline` chains a ``SQLTransformer`` that adds ``amount_zscore``
   from the *training* category statistics written into its statement, the
   categorical encoders, the assembler and the classifier. The fitted
   ``PipelineModel`` therefore carries everything it needs and loads from a path
   or the MLflow registry as it is, for batch and streaming DataFrames alike;
3. :func:`predict` adds ``fraud_probability`` (P(fraud = 1)) to model-input rows.

Class imbalance is handled by per-row weights (:func:`add_class_weight`, whose
strength the search tunes), never by resampling, so evaluation data keeps its
real fraud share. Evaluation is
temporal (:func:`temporal_split`): the model is tested on later steps than it
was trained on, and the decision threshold is chosen on a validation slice of
the training steps (:func:`choose_threshold`), never on test.

Functions that return a DataFrame or a Column are lazy and pure. The ones that
return plain Python values (:func:`category_stats`, :func:`step_range`,
:func:`threshold_table`, :func:`evaluate`, :func:`drift_reference`) run small
Spark jobs, and :func:`select_model` fits models; each says so. None of them
reads, writes or builds a session.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Estimator, Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab import features
from fraudlab.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

LABEL_COL = "fraud"
WEIGHT_COL = "class_weight"
FEATURES_COL = "features"
PROBABILITY_COL = "fraud_probability"

#: Columns the fitted pipeline reads: what a scoring input must carry (see :func:`model_input`).
MODEL_INPUT_COLUMNS: list[str] = [*CATEGORICAL_FEATURES, *[c for c in NUMERIC_FEATURES if c != "amount_zscore"]]

#: Share of the step range that :func:`default_split_step` leaves to the later slice.
DEFAULT_HOLDOUT_SHARE = 0.2

#: Probabilities are grouped on this grid to find thresholds and draw the PR curve.
THRESHOLD_GRID = 10_000


# --------------------------------------------------------------------------- features and pipeline


def model_input(df: DataFrame) -> DataFrame:
    """Prepared rows -> the same rows plus the customer-history features and ``log_amount``.

    ``amount_zscore`` is not added here: the pipeline's first stage computes it
    from the training statistics it carries.
    """
    return features.add_log_amount(features.add_customer_history(df))


def category_stats(df: DataFrame) -> dict[str, tuple[float, float | None]]:
    """``{category: (mean amount, sample std)}`` of ``df`` (an action; call it on training rows only).

    The std is ``None`` for a category with a single row; its z-score is then 0.
    """
    rows = features.category_amount_stats(df).collect()
    return {
        r["category"]: (float(r["category_mean_amount"]),
                        None if r["category_std_amount"] is None else float(r["category_std_amount"]))
        for r in rows
    }


def _sql_double(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "CAST(NULL AS DOUBLE)"
    # The D suffix makes a DOUBLE literal (a bare 37.89 would be a DECIMAL).
    return f"{float(value)!r}D"


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def zscore_statement(stats: dict[str, tuple[float, float | None]]) -> str:
    """The ``SQLTransformer`` statement that adds ``amount_zscore`` from ``stats``.

    It computes exactly :func:`fraudlab.features.zscore`: (amount - mean) / std,
    0.0 for a category missing from ``stats`` or with a zero or unknown spread.
    """
    if not stats:
        raise ValueError("category statistics are empty: no training rows?")
    ordered = sorted(stats.items())
    mean = " ".join(f"WHEN {_sql_string(c)} THEN {_sql_double(m)}" for c, (m, _) in ordered)
    std = " ".join(f"WHEN {_sql_string(c)} THEN {_sql_double(s)}" for c, (_, s) in ordered)
    return (
        "SELECT *, coalesce(try_divide("
        f"amount - (CASE category {mean} END), "
        f"nullif(CASE category {std} END, 0.0D)), 0.0D) AS amount_zscore "
        "FROM __THIS__"
    )


def zscore_transformer(stats: dict[str, tuple[float, float | None]]) -> SQLTransformer:
    """The pipeline's first stage: adds ``amount_zscore`` from the embedded training statistics."""
    return SQLTransformer(statement=zscore_statement(stats))


def feature_stages(stats: dict[str, tuple[float, float | None]]) -> list[Transformer | Estimator]:
    """Every stage before the classifier: z-score, index + one-hot the categoricals, assemble."""
    indexed = [f"{c}_index" for c in CATEGORICAL_FEATURES]
    encoded = [f"{c}_vec" for c in CATEGORICAL_FEATURES]
    return [
        zscore_transformer(stats),
        # "keep" gives unseen values (a new merchant in the stream) an extra index; the
        # encoder's dropLast turns that index into an all-zero vector instead of failing.
        StringIndexer(inputCols=CATEGORICAL_FEATURES, outputCols=indexed, handleInvalid="keep",
                      stringOrderType="frequencyDesc"),
        OneHotEncoder(inputCols=indexed, outputCols=encoded, dropLast=True),
        VectorAssembler(inputCols=[*encoded, *NUMERIC_FEATURES], outputCol=FEATURES_COL),
    ]


def configure_classifier(classifier: Estimator) -> Estimator:
    """A copy of ``classifier`` reading the lab's feature, label and weight columns."""
    return classifier.copy().setFeaturesCol(FEATURES_COL).setLabelCol(LABEL_COL).setWeightCol(WEIGHT_COL)


def build_pipeline(classifier: Estimator, category_stats: dict[str, tuple[float, float | None]]) -> Pipeline:
    """The whole model: :func:`feature_stages` from ``category_stats`` followed by ``classifier``.

    The classifier is copied and set to label ``fraud``, weight ``class_weight``
    and features ``features``. Fit it on :func:`model_input` rows that carry
    ``class_weight`` (:func:`add_class_weight`).
    """
    return Pipeline(stages=[*feature_stages(category_stats), configure_classifier(classifier)])


def class_weight(label: Column, fraud_share: Column, strength: float = 1.0) -> Column:
    """Per-row weight for a fraud share: frauds weigh ``((1 - share) / share) ** strength`` times legitimate rows.

    ``strength`` 1.0 is "balanced" (both classes weigh the same in total), 0.5 a
    softer square-root balance, 0.0 no weighting. Weights are scaled so they sum
    to the number of rows. A slice without frauds (or only frauds) gets weights of 1.
    """
    ratio = F.pow((F.lit(1.0) - fraud_share) / fraud_share, F.lit(float(strength)))
    legit = F.lit(1.0) / (fraud_share * ratio + F.lit(1.0) - fraud_share)
    return (
        F.when((fraud_share <= 0) | (fraud_share >= 1), F.lit(1.0))
        .when(label == 1, legit * ratio)
        .otherwise(legit)
    )


def add_class_weight(df: DataFrame, fraud_share: float | None = None, strength: float = 1.0) -> DataFrame:
    """Add ``class_weight`` (:func:`class_weight`); ``fraud_share`` is ``df``'s own unless given.

    Rows keep their number: nothing is resampled.
    """
    if fraud_share is None:
        share_df = df.agg(F.avg(F.col(LABEL_COL).cast("double")).alias("_fraud_share"))
        with_share = df.crossJoin(F.broadcast(share_df))
    else:
        with_share = df.withColumn("_fraud_share", F.lit(float(fraud_share)))
    weight = class_weight(F.col(LABEL_COL), F.col("_fraud_share"), strength)
    return with_share.withColumn(WEIGHT_COL, weight).drop("_fraud_share")


def fraud_probability(scored: DataFrame) -> Column:
    """P(fraud = 1) from the classifier's ``probability`` vector, as a double column."""
    return vector_to_array(scored["probability"])[1].cast("double")


def predict(model: PipelineModel, df: DataFrame) -> DataFrame:
    """``df`` (model-input rows, batch or streaming) plus ``amount_zscore`` and ``fraud_probability``.

    The pipeline's working columns (indices, vectors, raw scores, its 0.5-threshold
    ``prediction``) are dropped: decisions use the threshold chosen at training.
    """
    scored = model.transform(df)
    keep = [c for c in df.columns if c not in ("amount_zscore", PROBABILITY_COL)]
    return scored.select(*keep, "amount_zscore", fraud_probability(scored).alias(PROBABILITY_COL))


# --------------------------------------------------------------------------- temporal split


def step_range(df: DataFrame) -> tuple[int, int]:
    """Smallest and largest ``step`` of ``df`` (an action)."""
    row = df.agg(F.min("step").alias("lo"), F.max("step").alias("hi")).first()
    if row is None or row["lo"] is None:
        raise ValueError("no rows: cannot split by step")
    return int(row["lo"]), int(row["hi"])


def default_split_step(min_step: int, max_step: int, holdout_share: float = DEFAULT_HOLDOUT_SHARE) -> int:
    """First step of the later slice: the last ``holdout_share`` of the step range.

    ``min + (1 - share) * (max - min + 1)``, rounded; 144 for BankSim's steps 0..179.
    Both slices keep at least one step when the range has two or more.
    """
    if max_step < min_step:
        raise ValueError(f"empty step range {min_step}..{max_step}")
    split = int(math.floor(min_step + (1.0 - holdout_share) * (max_step - min_step + 1) + 0.5))
    return max(min_step + 1, min(split, max_step)) if max_step > min_step else max_step


def temporal_split(df: DataFrame, split_step: int) -> tuple[DataFrame, DataFrame]:
    """``(earlier, later)``: rows with ``step < split_step`` and rows with ``step >= split_step``."""
    is_later = F.col("step") >= F.lit(split_step)
    return df.where(~is_later), df.where(is_later)


# --------------------------------------------------------------------------- thresholds and metrics


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


# --------------------------------------------------------------------------- model search

#: Search modes of fit_model. "fast" keeps ``make demo`` to a few minutes on the full
#: data set on 2 cores; "full" is a wider grid for a real machine or an afternoon.
#: "smoke" is the smallest grid that still compares both families, for tests.
SEARCH_MODES = ("fast", "full", "smoke")


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a classifier with its hyper-parameters, and how strongly frauds are up-weighted."""

    estimator: Estimator
    class_weight_strength: float = 1.0


def search_candidates(mode: str = "fast", seed: int = 42) -> list[Candidate]:
    """The points a search tries.

    The class-weight strength is searched too: fully balanced weights (41:1 at
    BankSim's 1.2 % fraud share) blunt the ranking that average precision
    measures, the square-root balance (about 9:1) often ranks better.
    """
    if mode == "fast":
        # Two cheap logistic fits share one thread while the boosted trees use the other.
        return [
            Candidate(LogisticRegression(regParam=0.0, maxIter=50), 0.5),
            Candidate(LogisticRegression(regParam=0.0, maxIter=50), 1.0),
            Candidate(GBTClassifier(maxDepth=5, maxIter=20, stepSize=0.2, seed=seed), 0.5),
        ]
    if mode == "smoke":
        return [Candidate(LogisticRegression(maxIter=15), 0.5),
                Candidate(GBTClassifier(maxDepth=3, maxIter=5, seed=seed), 0.5)]
    if mode == "full":
        logistic = [
            Candidate(LogisticRegression(regParam=reg, elasticNetParam=mix, maxIter=200), strength)
            for reg in (0.0, 0.0003, 0.003) for mix in (0.0, 0.5) for strength in (0.5, 1.0)
            if not (reg == 0.0 and mix > 0)
        ]
        boosted = [
            Candidate(GBTClassifier(maxDepth=depth, maxIter=iters, stepSize=0.1, subsamplingRate=0.8, maxBins=64,
                                    seed=seed), strength)
            for depth in (4, 6) for iters in (50, 100) for strength in (0.25, 0.5)
        ]
        return [*logistic, *boosted]
    raise ValueError(f"search mode must be one of {SEARCH_MODES}, got {mode!r}")


@dataclass
class CandidateResult:
    """One candidate of the search, fitted on the early training steps and judged on the validation steps."""

    estimator: Estimator
    model_type: str
    params: dict[str, Any]
    class_weight_strength: float
    validation_average_precision: float
    validation_roc_auc: float
    validation_threshold: dict[str, float]
    fit_seconds: float
    validation_pr_table: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "params": self.params,
                "class_weight_strength": self.class_weight_strength,
                "validation_average_precision": self.validation_average_precision,
                "validation_roc_auc": self.validation_roc_auc,
                "validation_threshold": self.validation_threshold, "fit_seconds": round(self.fit_seconds, 2)}


def select_model(early: DataFrame, validation: DataFrame, candidates: list[Candidate | Estimator],
                 parallelism: int = 2) -> list[CandidateResult]:
    """Fit every candidate on ``early`` and judge it on ``validation``; best (by average precision) first.

    Both inputs are :func:`model_input` rows of *consecutive step ranges*, the
    validation steps after the early ones. Spark's TrainValidationSplit and
    CrossValidator split rows at random, which lets a model learn from days after
    the ones it is judged on; so the time-respecting split is done here and the
    candidates are fitted in ``parallelism`` threads, as those tuners do. The
    feature stages are fitted once on ``early`` (statistics of early rows only)
    and their output cached, so the candidates differ only in the classifier and
    the class weights. Each candidate's decision threshold is its best F1 on
    ``validation``. A bare Estimator counts as balanced weights. Fits models: slow.
    """
    points = [c if isinstance(c, Candidate) else Candidate(c) for c in candidates]
    if not points:
        raise ValueError("no candidates to search")
    stats = category_stats(early)
    featurizer = Pipeline(stages=feature_stages(stats)).fit(early)
    early_vectors = featurizer.transform(early).select(FEATURES_COL, LABEL_COL).cache()
    validation_vectors = featurizer.transform(validation).select(FEATURES_COL, LABEL_COL).cache()
    share = early_vectors.agg(F.avg(F.col(LABEL_COL).cast("double"))).first()[0] or 0.0
    try:
        def judge(point: Candidate) -> CandidateResult:
            weighted = early_vectors.withColumn(
                WEIGHT_COL, class_weight(F.col(LABEL_COL), F.lit(share), point.class_weight_strength))
            started = time.perf_counter()
            fitted = configure_classifier(point.estimator).fit(weighted)
            fit_seconds = time.perf_counter() - started
            scored = fitted.transform(validation_vectors)
            scored = scored.select(LABEL_COL, fraud_probability(scored).alias(PROBABILITY_COL)).cache()
            try:
                table = threshold_table(scored)
                return CandidateResult(
                    estimator=point.estimator,
                    model_type=type(point.estimator).__name__,
                    params=classifier_params(fitted),
                    class_weight_strength=point.class_weight_strength,
                    validation_average_precision=average_precision(scored),
                    validation_roc_auc=roc_auc(scored),
                    validation_threshold=choose_threshold(table),
                    fit_seconds=fit_seconds,
                    validation_pr_table=table,
                )
            finally:
                scored.unpersist()

        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            results = list(pool.map(judge, points))
    finally:
        early_vectors.unpersist()
        validation_vectors.unpersist()
    return sorted(results, key=lambda r: -r.validation_average_precision)


# --------------------------------------------------------------------------- fitted-model introspection


def feature_names(model: PipelineModel, df: DataFrame) -> list[str]:
    """Names of the assembled vector's slots, e.g. ``category_vec_es_travel`` or ``amount``."""
    schema = model.transform(df.limit(0)).schema
    attrs = schema[FEATURES_COL].metadata.get("ml_attr", {}).get("attrs", {})
    slots = sorted((a["idx"], a["name"]) for group in attrs.values() for a in group)
    return [name for _, name in slots]


def feature_importances(model: PipelineModel, df: DataFrame) -> dict[str, float]:
    """Feature importances of a tree classifier by feature name, largest first; ``{}`` for other models."""
    classifier = model.stages[-1]
    if not hasattr(classifier, "featureImportances"):
        return {}
    weights = classifier.featureImportances.toArray()
    names = feature_names(model, df)
    return dict(sorted(zip(names, (float(w) for w in weights)), key=lambda kv: -kv[1]))


def classifier_params(estimator_or_model: Any) -> dict[str, Any]:
    """The explicitly set and default params of a classifier, minus the column names."""
    skip = {"featuresCol", "labelCol", "weightCol", "predictionCol", "probabilityCol", "rawPredictionCol",
            "checkpointInterval", "cacheNodeIds",
            # MLlib's own 0.5 cut-off is not ours: the lab's threshold is chosen on validation.
            "threshold", "thresholds"}
    params = estimator_or_model.extractParamMap()
    out = {}
    for param, value in params.items():
        if param.name in skip:
            continue
        out[param.name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return dict(sorted(out.items()))
