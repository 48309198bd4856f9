"""fraudlab.train and the z-score stage on tiny inline data: the pipeline, its z-score stage, weights, split, thresholds, gate, drift."""

from __future__ import annotations

import math
import statistics

import pytest
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StringIndexer, VectorAssembler
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from fraudlab import features
from fraudlab.train import metrics as train_metrics
from fraudlab.train import pipeline as train_pipeline
from fraudlab.train import search as train_search
from fraudlab.train import split as train_split
from fraudlab.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from fraudlab.schemas import PREPARED_SCHEMA

pytestmark = pytest.mark.spark


def prepared_rows(spark, rows):
    """Prepared rows from (step, customer, merchant, category, amount, fraud) tuples."""
    full = [
        (f"t{i}", step, customer, "2", "F", "28007", merchant, "28007", category, float(amount), fraud)
        for i, (step, customer, merchant, category, amount, fraud) in enumerate(rows)
    ]
    df = spark.createDataFrame(
        full,
        "transaction_id string, step int, customer string, age string, gender string, zipcode_ori string, "
        "merchant string, zip_merchant string, category string, amount double, fraud int",
    )
    event_time = F.timestamp_add("DAY", F.col("step"), F.lit("2024-01-01").cast("timestamp"))
    return (
        df.withColumn("event_time", event_time)
        .withColumn("event_month", F.date_format(event_time, "yyyy-MM"))
        .select(*[F.col(f.name).cast(f.dataType) for f in PREPARED_SCHEMA.fields])
    )


def signal_rows(n_steps: int = 40, per_step: int = 12) -> list[tuple]:
    """Deterministic rows with a clear signal: large travel and leisure payments are fraud."""
    rows = []
    for step in range(n_steps):
        for k in range(per_step):
            i = step * per_step + k
            customer = f"C{i % 15}"
            if k == 0 and step % 2 == 0:
                rows.append((step, customer, "M1", "es_travel", 900 + (i * 37) % 900, 1))
            elif k == 1 and step % 3 == 0:
                rows.append((step, customer, "M2", "es_leisure", 400 + (i * 13) % 300, 1))
            elif k % 3 == 0:
                rows.append((step, customer, "M1", "es_travel", 80 + (i * 7) % 200, 0))
            else:
                rows.append((step, customer, "M3", "es_transportation", 5 + (i * 11) % 60, 0))
    return rows


@pytest.fixture(scope="module")
def signal_data(spark):
    return features.model_input(prepared_rows(spark, signal_rows())).cache()


def test_model_input_adds_customer_history_and_log_amount(spark):
    df = prepared_rows(spark, [(0, "C1", "M1", "es_food", 10.0, 0), (1, "C1", "M1", "es_food", 30.0, 0),
                               (1, "C1", "M2", "es_food", 20.0, 0), (2, "C1", "M1", "es_food", 40.0, 0)])
    out = features.model_input(df).select("step", "amount", "customer_prior_count", "amount_over_customer_mean",
                                        F.round("log_amount", 6).alias("log_amount"))
    expected = spark.createDataFrame(
        [(0, 10.0, 0.0, 1.0, round(math.log1p(10.0), 6)),
         (1, 30.0, 1.0, 3.0, round(math.log1p(30.0), 6)),
         (1, 20.0, 1.0, 2.0, round(math.log1p(20.0), 6)),
         (2, 40.0, 3.0, 2.0, round(math.log1p(40.0), 6))],
        "step int, amount double, customer_prior_count double, amount_over_customer_mean double, log_amount double",
    )
    assertDataFrameEqual(out, expected)
    assert "amount_zscore" not in features.model_input(df).columns


def test_build_pipeline_chains_zscore_encoders_assembler_and_weighted_classifier():
    pipeline = train_pipeline.build_pipeline(LogisticRegression(), {"es_food": (10.0, 2.0)})
    stages = pipeline.getStages()
    assert [type(s) for s in stages] == [SQLTransformer, StringIndexer, OneHotEncoder, VectorAssembler,
                                         LogisticRegression]
    indexer, assembler, classifier = stages[1], stages[3], stages[4]
    assert indexer.getInputCols() == CATEGORICAL_FEATURES
    assert indexer.getHandleInvalid() == "keep"
    assert assembler.getInputCols() == [f"{c}_vec" for c in CATEGORICAL_FEATURES] + NUMERIC_FEATURES
    assert (classifier.getLabelCol(), classifier.getWeightCol(), classifier.getFeaturesCol()) == (
        "fraud", "class_weight", "features")


def test_build_pipeline_leaves_the_callers_classifier_untouched():
    mine = GBTClassifier(labelCol="label")
    train_pipeline.build_pipeline(mine, {"es_food": (10.0, 2.0)})
    assert mine.getLabelCol() == "label"
    assert not mine.isSet(mine.weightCol)


def test_zscore_stage_computes_amount_zscore_from_embedded_training_stats(spark):
    stats = {"es_food": (10.0, 2.0), "es_travel": (500.0, 0.0), "es_tech": (50.0, None), "it's": (1.0, 1.0)}
    rows = spark.createDataFrame(
        [("a", "es_food", 14.0), ("b", "es_food", 7.0), ("c", "es_travel", 900.0), ("d", "es_tech", 60.0),
         ("e", "es_unknown", 60.0), ("f", "it's", 3.0)],
        "id string, category string, amount double",
    )
    out = features.zscore_transformer(stats).transform(rows).select("id", "amount_zscore")
    expected = spark.createDataFrame(
        [("a", 2.0), ("b", -1.5), ("c", 0.0), ("d", 0.0), ("e", 0.0), ("f", 2.0)], "id string, amount_zscore double")
    assertDataFrameEqual(out, expected)


def test_zscore_stage_agrees_with_a_plain_python_zscore(spark, signal_data):
    rows = signal_data.select("transaction_id", "category", "amount").collect()
    by_category: dict[str, list[float]] = {}
    for r in rows:
        by_category.setdefault(r["category"], []).append(r["amount"])
    spread = {c: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else None) for c, v in by_category.items()}
    by_stage = features.zscore_transformer(features.category_stats(signal_data)).transform(signal_data) \
        .select("transaction_id", "amount_zscore")
    by_python = spark.createDataFrame(
        [(r["transaction_id"], (r["amount"] - spread[r["category"]][0]) / spread[r["category"]][1]
          if spread[r["category"]][1] else 0.0) for r in rows],
        "transaction_id string, amount_zscore double")
    assertDataFrameEqual(by_stage, by_python, rtol=1e-9)


def test_class_weights_give_both_classes_the_same_total_weight(spark):
    df = spark.createDataFrame([(1,)] * 2 + [(0,)] * 8, "fraud int")
    weighted = train_pipeline.add_class_weight(df)
    totals = {r["fraud"]: (r["w"], r["total"]) for r in weighted.groupBy("fraud")
              .agg(F.first("class_weight").alias("w"), F.sum("class_weight").alias("total")).collect()}
    assert totals == {1: pytest.approx((2.5, 5.0)), 0: pytest.approx((0.625, 5.0))}
    assert weighted.count() == 10  # weighted, not resampled


def test_softer_class_weight_strength_up_weights_frauds_by_the_root_of_the_imbalance(spark):
    df = spark.createDataFrame([(1,)] * 2 + [(0,)] * 8, "fraud int")
    weights = {r["fraud"]: r["class_weight"] for r in train_pipeline.add_class_weight(df, strength=0.5).distinct().collect()}
    assert weights[1] / weights[0] == pytest.approx(2.0)  # sqrt(0.8 / 0.2)
    assert 2 * weights[1] + 8 * weights[0] == pytest.approx(10.0)  # the rows' total weight is kept
    unweighted = train_pipeline.add_class_weight(df, strength=0.0).select("class_weight").distinct().collect()
    assert [r[0] for r in unweighted] == [pytest.approx(1.0)]


def test_default_split_step_is_step_144_for_banksim():
    assert train_split.default_split_step(0, 179) == 144
    assert train_split.default_split_step(0, 143) == 115
    assert train_split.default_split_step(10, 11) == 11


def test_temporal_split_keeps_every_test_step_out_of_train(spark, signal_data):
    train, test = train_split.temporal_split(signal_data, 30)
    train_max = train.agg(F.max("step")).first()[0]
    test_min = test.agg(F.min("step")).first()[0]
    assert (train_max, test_min) == (29, 30)
    assert train.count() + test.count() == signal_data.count()


def test_predict_adds_fraud_probability_and_scores_unseen_values(spark, signal_data):
    train, test = train_split.temporal_split(signal_data, 30)
    stats = features.category_stats(train)
    pipeline_model = train_pipeline.build_pipeline(LogisticRegression(maxIter=20), stats).fit(train_pipeline.add_class_weight(train))
    unseen = features.model_input(prepared_rows(spark, [(35, "C999", "M999", "es_new", 50.0, 0)]))
    scored = train_pipeline.predict(pipeline_model, test.unionByName(unseen)).cache()

    assert scored.columns == [*test.columns, "amount_zscore", "fraud_probability"]
    assert dict(scored.dtypes)["fraud_probability"] == "double"
    assert scored.count() == test.count() + 1
    assert scored.where(~F.col("fraud_probability").between(0.0, 1.0)).count() == 0
    assert train_metrics.average_precision(scored) > 0.9


def test_threshold_table_and_choice_find_the_best_f1_cut(spark):
    scored = spark.createDataFrame(
        [(1, 0.95), (1, 0.9), (0, 0.85), (1, 0.6), (0, 0.55), (0, 0.2), (1, 0.1), (0, 0.05)],
        "fraud int, fraud_probability double")
    table = train_metrics.threshold_table(scored)
    assert [r["threshold"] for r in table] == [0.95, 0.9, 0.85, 0.6, 0.55, 0.2, 0.1, 0.05]
    assert table[-1]["recall"] == 1.0 and table[-1]["flagged"] == 8
    best = train_metrics.choose_threshold(table)
    # flag >= 0.6: tp 3, fp 1, fn 1 -> precision 0.75, recall 0.75 (F1 0.75), the best cut
    assert best["threshold"] == 0.6
    assert best["f1"] == pytest.approx(0.75)
    at = train_metrics.confusion_at(scored, best["threshold"])
    assert (at["tp"], at["fp"], at["fn"], at["tn"]) == (3, 1, 1, 3)


def test_select_model_ranks_candidates_and_picks_thresholds_on_validation_rows_only(spark, signal_data):
    early, validation = train_split.temporal_split(signal_data.where(F.col("step") < 30), 22)
    results = train_search.select_model(
        early, validation,
        [LogisticRegression(maxIter=10), train_search.Candidate(GBTClassifier(maxDepth=2, maxIter=3, seed=1), 0.5)],
        parallelism=2)
    assert sorted((r.model_type, r.class_weight_strength) for r in results) == [
        ("GBTClassifier", 0.5), ("LogisticRegression", 1.0)]
    aps = [r.validation_average_precision for r in results]
    assert aps == sorted(aps, reverse=True)
    validation_rows = validation.count()
    validation_frauds = validation.agg(F.sum("fraud")).first()[0]
    for result in results:
        # every validation row, and only those, went into the threshold table
        assert result.validation_pr_table[-1]["flagged"] == validation_rows
        assert result.validation_pr_table[-1]["true_positives"] == validation_frauds
        assert result.validation_threshold == train_metrics.choose_threshold(result.validation_pr_table)
