"""Feature definitions on a few inline rows: no look-ahead, right arithmetic."""

from __future__ import annotations

import pytest

from fraudlab.features import (
    add_amount_zscore,
    add_customer_history,
    add_features,
    add_log_amount,
    category_stats,
)

pytestmark = pytest.mark.spark

COLUMNS = "transaction_id string, step int, customer string, category string, amount double"


def rows(spark, data):
    return spark.createDataFrame(data, COLUMNS)


def by_id(df, column):
    return {row["transaction_id"]: row[column] for row in df.collect()}


def test_customer_history_counts_only_earlier_steps(spark):
    df = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 1, "C1", "es_food", 30.0),
                      ("c", 1, "C1", "es_food", 50.0), ("d", 2, "C1", "es_food", 90.0),
                      ("e", 0, "C2", "es_food", 5.0)])
    out = add_customer_history(df)
    assert by_id(out, "customer_prior_count") == {"a": 0, "b": 1, "c": 1, "d": 3, "e": 0}
    assert by_id(out, "customer_prior_mean_amount") == {"a": None, "b": 10.0, "c": 10.0, "d": 30.0, "e": None}


def test_amount_over_customer_mean_is_one_without_history(spark):
    df = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 3, "C1", "es_food", 40.0)])
    assert by_id(add_customer_history(df), "amount_over_customer_mean") == {"a": 1.0, "b": 4.0}


def test_amount_over_customer_mean_survives_a_zero_mean(spark):
    df = rows(spark, [("a", 0, "C1", "es_food", 0.0), ("b", 1, "C1", "es_food", 7.0)])
    assert by_id(add_customer_history(df), "amount_over_customer_mean") == {"a": 1.0, "b": 1.0}


def test_history_ignores_future_rows(spark):
    early = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 1, "C1", "es_food", 20.0)])
    with_future = early.unionByName(rows(spark, [("z", 5, "C1", "es_food", 1000.0)]))
    before = by_id(add_customer_history(early), "amount_over_customer_mean")
    after = by_id(add_customer_history(with_future), "amount_over_customer_mean")
    assert {k: after[k] for k in before} == before


def test_category_stats_and_zscore(spark):
    train = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 0, "C2", "es_food", 20.0),
                         ("c", 0, "C3", "es_food", 30.0)])
    stats = category_stats(train)
    scored = rows(spark, [("x", 1, "C1", "es_food", 40.0), ("y", 1, "C1", "es_tech", 40.0)])
    z = by_id(add_amount_zscore(scored, stats), "amount_zscore")
    assert z["x"] == pytest.approx(2.0)  # mean 20, sample std 10
    assert z["y"] == 0.0  # a category the statistics never saw


def test_zscore_is_zero_when_a_category_has_no_spread(spark):
    train = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 0, "C2", "es_food", 10.0)])
    scored = rows(spark, [("x", 1, "C1", "es_food", 99.0)])
    assert by_id(add_amount_zscore(scored, category_stats(train)), "amount_zscore") == {"x": 0.0}


def test_log_amount_is_log1p(spark):
    import math

    out = by_id(add_log_amount(rows(spark, [("a", 0, "C1", "es_food", math.e - 1)])), "log_amount")
    assert out["a"] == pytest.approx(1.0)


def test_add_features_keeps_every_row_and_adds_all_columns(spark):
    df = rows(spark, [("a", 0, "C1", "es_food", 10.0), ("b", 1, "C1", "es_tech", 20.0)])
    out = add_features(df, category_stats(df))
    assert out.count() == 2
    assert {"customer_prior_count", "amount_over_customer_mean", "amount_zscore", "log_amount"} <= set(out.columns)
