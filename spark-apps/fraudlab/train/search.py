"""The model search: candidates per mode, fitted on the early steps and ranked on validation.

:func:`select_model` fits the candidates (in threads that share the session) and ranks them by
validation average precision, each with the threshold chosen on the same slice.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Estimator, Pipeline
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fraudlab.features import category_stats
from fraudlab.train.metrics import average_precision, choose_threshold, roc_auc, threshold_table
from fraudlab.train.pipeline import (
    FEATURES_COL,
    LABEL_COL,
    PROBABILITY_COL,
    WEIGHT_COL,
    class_weight,
    classifier_params,
    configure_classifier,
    feature_stages,
    fraud_probability,
)


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
