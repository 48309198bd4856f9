"""fraudlab.notebook.summaries on hand-made metrics, and feature weights of two small fitted models."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudlab import features
from fraudlab.train import pipeline as train_pipeline
from fraudlab.notebook import summaries
from fraudlab.schemas import PREPARED_SCHEMA
from tests.notebooks import TABLE

# --------------------------------------------------------------------------- trade-off and drift


def test_alerts_per_day_vs_recall_spreads_the_flagged_rows_over_the_days():
    out = summaries.alerts_per_day_vs_recall(TABLE, days=10)
    assert list(out.columns) == ["threshold", "recall", "precision", "flagged", "alerts_per_day"]
    assert list(out["alerts_per_day"]) == pytest.approx([0.1, 0.5, 0.6, 2.0])
    assert list(out["recall"]) == [0.25, 0.75, 0.75, 1.0]


@pytest.mark.parametrize("days", [0, -1])
def test_alerts_per_day_needs_days(days):
    with pytest.raises(ValueError, match="days"):
        summaries.alerts_per_day_vs_recall(TABLE, days)


def test_operating_point_adds_alerts_per_day_to_the_confusion_figures():
    confusion = {"threshold": 0.5, "precision": 0.75, "recall": 0.6, "f1": 0.67, "tp": 3, "fp": 1, "fn": 2, "tn": 94}
    assert summaries.operating_point(confusion, 4) == {**confusion, "alerts_per_day": 1.0}


def test_recall_levels_take_the_highest_threshold_reaching_each_level_and_skip_unreachable_ones():
    tradeoff = summaries.alerts_per_day_vs_recall(TABLE[:3], days=10)  # never reaches recall 1.0
    out = summaries.recall_levels(tradeoff, [0.5, 0.75, 1.0])
    assert out.to_dict("records") == [
        {"recall_at_least": 0.5, "threshold": 0.5, "recall": 0.75, "precision": 0.6, "alerts_per_day": 0.5},
        {"recall_at_least": 0.75, "threshold": 0.5, "recall": 0.75, "precision": 0.6, "alerts_per_day": 0.5},
    ]


def test_drift_table_lists_the_largest_psi_first_with_its_status():
    metrics = {"drift": {"amount": 0.02, "customer_prior_count": 0.3, "amount_zscore": 0.12},
               "drift_status": {"amount": "stable", "customer_prior_count": "significant"}}
    out = summaries.drift_table(metrics)
    assert out.to_dict("records") == [
        {"feature": "customer_prior_count", "psi": 0.3, "status": "significant"},
        {"feature": "amount_zscore", "psi": 0.12, "status": "moderate"},  # status missing: from the PSI
        {"feature": "amount", "psi": 0.02, "status": "stable"},
    ]


def test_drift_table_of_a_run_without_drift_is_empty():
    assert summaries.drift_table({"claims_processed": 3}).empty


# --------------------------------------------------------------------------- feature weights


def prepared(spark, rows):
    start = dt.datetime(2024, 1, 1)
    return spark.createDataFrame(
        [(f"t{i}", step, customer, "2", "F", "28007", merchant, "28007", category, amount, fraud,
          start + dt.timedelta(days=step), "2024-01") for i, (step, customer, merchant, category, amount, fraud)
         in enumerate(rows)], PREPARED_SCHEMA)


def training_rows():
    rows = []
    for c in range(6):
        for step in range(6):
            rows.append((step, f"C{c}", "M85975013", "es_food", 10.0 + 3 * c + step, 0))
        rows.append((6, f"C{c}", "M480139044", "es_health", 400.0 + 50 * c, int(c % 2 == 0)))
    return rows


@pytest.mark.spark
def test_feature_weights_of_a_logistic_regression_are_coefficients_times_feature_spread(spark):
    from pyspark.ml.classification import LogisticRegression

    data = features.model_input(prepared(spark, training_rows())).cache()
    fitted = train_pipeline.build_pipeline(LogisticRegression(maxIter=20), features.category_stats(data)).fit(
        train_pipeline.add_class_weight(data))
    weights, kind = summaries.feature_weights(fitted, data)
    assert kind == "|coefficient| x feature std"
    names = train_pipeline.feature_names(fitted, data)
    assert sorted(weights["feature"]) == sorted(names)
    assert list(weights["weight"]) == sorted(weights["weight"], reverse=True)
    by_name = dict(zip(weights["feature"], weights["weight"]))
    assert by_name["gender_vec_F"] == 0.0  # one gender only: the feature never varies
    amount_std = data.toPandas()["amount"].std()
    coefficient = fitted.stages[-1].coefficients[names.index("amount")]
    assert by_name["amount"] == pytest.approx(abs(coefficient) * amount_std)


@pytest.mark.spark
def test_feature_weights_of_a_tree_model_are_its_importances(spark):
    from pyspark.ml.classification import GBTClassifier

    data = features.model_input(prepared(spark, training_rows())).cache()
    fitted = train_pipeline.build_pipeline(GBTClassifier(maxIter=3, maxDepth=2, seed=1), features.category_stats(data)).fit(
        train_pipeline.add_class_weight(data))
    weights, kind = summaries.feature_weights(fitted, data)
    assert kind == "feature importance"
    assert dict(zip(weights["feature"], weights["weight"])) == train_pipeline.feature_importances(fitted, data)
