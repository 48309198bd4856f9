"""The model: the feature stages and the classifier in one ``Pipeline``, class weights, prediction.

One pipeline definition serves training, batch scoring and the stream classifier.
:func:`build_pipeline` chains the z-score stage (:func:`fraudlab.features.zscore_transformer`,
the *training* category statistics written into its statement), the categorical encoders, the
assembler and the classifier. The fitted ``PipelineModel`` therefore carries everything it needs
and loads from a path or the MLflow registry as it is, for batch and streaming DataFrames alike;
:func:`predict` adds ``fraud_probability`` (P(fraud = 1)) to model-input rows
(:func:`fraudlab.features.model_input`).

Class imbalance is handled by per-row weights (:func:`add_class_weight`, whose strength the
search tunes), never by resampling, so evaluation data keeps its real fraud share.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Estimator, Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab import drift, io
from fraudlab.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    category_stats,
    model_input,
    stats_as_json,
    zscore_transformer,
)

LABEL_COL = "fraud"
WEIGHT_COL = "class_weight"
FEATURES_COL = "features"
PROBABILITY_COL = "fraud_probability"


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
    and features ``features``. Fit it on :func:`fraudlab.features.model_input` rows that carry
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


def save_logistic_model(prepared: DataFrame, target: str, threshold: float) -> PipelineModel:
    """A plain logistic regression fitted on ``prepared`` rows and saved as ``fit_model.py`` saves a model.

    No search and no gate: 30 iterations, L2 0.01, balanced class weights. ``target`` gets the
    ``PipelineModel``, a ``metrics.json`` with ``threshold``, a passed gate and the training
    category statistics (what :func:`fraudlab.registry.check_feature_sql` checks the saved SQL
    against), and ``drift_reference.json``: everything scoring and the stream classifier read. For
    tests, benchmarks and notebooks that need a working model in seconds, not the best one.
    """
    stats = category_stats(prepared)
    rows = model_input(prepared)
    fitted = build_pipeline(LogisticRegression(maxIter=30, regParam=0.01), stats).fit(add_class_weight(rows))
    fitted.write().overwrite().save(target)
    spark = prepared.sparkSession
    io.write_json(spark, f"{target}/metrics.json", {"threshold": threshold, "gate": {"passed": True},
                                                   "category_stats": stats_as_json(stats)})
    io.write_json(spark, f"{target}/drift_reference.json", drift.drift_reference(fitted.stages[0].transform(rows)))
    return fitted
