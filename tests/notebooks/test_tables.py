"""fraudlab.notebook.tables on a few inline rows, every expected figure worked out by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from fraudlab.notebook import tables

# --------------------------------------------------------------------------- inline data

LABELLED = T.StructType([
    T.StructField("transaction_id", T.StringType()),
    T.StructField("step", T.IntegerType()),
    T.StructField("customer", T.StringType()),
    T.StructField("merchant", T.StringType()),
    T.StructField("category", T.StringType()),
    T.StructField("amount", T.DoubleType()),
    T.StructField("fraud", T.IntegerType()),
])

ROWS = [
    # id, step, customer, merchant, category, amount, fraud
    ("t1", 0, "C1", "M1", "es_food", 5.0, 0),
    ("t2", 0, "C2", "M1", "es_food", 50.0, 0),
    ("t3", 1, "C1", "M2", "es_travel", 500.0, 1),
    ("t4", 1, "C3", "M2", "es_travel", 50.0, 1),
    ("t5", 1, "C3", "M3", "es_health", 40.0, 0),
    ("t6", 2, "C2", "M3", "es_health", 60.0, None),  # live traffic: no label yet
]


@pytest.fixture(scope="module")
def transactions(spark):
    return spark.createDataFrame(ROWS, LABELLED)


def scored_rows(spark, rows):
    """(id, fraud, probability) rows as predict() returns them, with the columns worst_errors lists."""
    schema = "transaction_id string, step int, amount double, fraud int, fraud_probability double"
    return spark.createDataFrame([(tid, 1, 10.0, fraud, p) for tid, fraud, p in rows], schema)


# --------------------------------------------------------------------------- Spark transforms


@pytest.mark.spark
def test_sample_customers_keeps_every_row_of_each_kept_customer(spark):
    rows = [(f"C{c}", step) for c in range(60) for step in range(3)]
    df = spark.createDataFrame(rows, "customer string, step int")
    sample = tables.sample_customers(df, 0.5, seed=3).toPandas()
    kept = sample.groupby("customer").size()
    assert 10 < len(kept) < 50
    assert set(kept) == {3}
    again = tables.sample_customers(df, 0.5, seed=3).toPandas()
    assert sorted(map(tuple, again.values)) == sorted(map(tuple, sample.values))


@pytest.mark.spark
def test_sample_customers_with_share_one_is_the_input(transactions):
    assert tables.sample_customers(transactions, 1.0) is transactions


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_sample_customers_rejects_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match="share"):
        tables.sample_customers(None, share)


@pytest.mark.spark
def test_overview_counts_rows_frauds_and_distinct_values(transactions):
    row = tables.overview(transactions).first().asDict()
    assert row == {"rows": 6, "frauds": 2, "fraud_rate": pytest.approx(2 / 5), "customers": 3, "merchants": 3,
                   "categories": 3, "first_step": 0, "last_step": 2}


@pytest.mark.spark
def test_fraud_rate_by_orders_by_rate_then_volume_and_ignores_unlabelled_rows_in_the_rate(spark, transactions):
    expected = spark.createDataFrame(
        [("es_travel", 2, 2, 1.0), ("es_food", 2, 0, 0.0), ("es_health", 2, 0, 0.0)],
        "category string, rows long, frauds long, fraud_rate double")
    assertDataFrameEqual(tables.fraud_rate_by(transactions, "category"), expected, checkRowOrder=True)


@pytest.mark.spark
def test_volume_by_step_counts_each_day(spark, transactions):
    expected = spark.createDataFrame(
        [(0, 2, 0, 0.0, 55.0), (1, 3, 2, 2 / 3, 590.0), (2, 1, 0, None, 60.0)],
        "step int, rows long, frauds long, fraud_rate double, amount double")
    assertDataFrameEqual(tables.volume_by_step(transactions), expected, checkRowOrder=True)


@pytest.mark.spark
def test_binned_by_label_lists_every_bin_with_rates_and_class_shares(spark, transactions):
    out = tables.binned_by_label(transactions, "amount", [10, 100, 1000, 5000]).toPandas()
    assert list(out["range"]) == ["< 10", "10-100", "100-1000", "1000-5000", ">= 5000"]
    assert list(out["rows"]) == [1, 3, 1, 0, 0]  # t6 has no label
    assert list(out["frauds"]) == [0, 1, 1, 0, 0]
    assert list(out["fraud_rate"][:3]) == pytest.approx([0.0, 1 / 3, 1.0])
    assert out["fraud_rate"][3:].isna().all()  # an empty bin has no rate
    assert list(out["fraud_share"]) == pytest.approx([0.0, 0.5, 0.5, 0.0, 0.0])
    assert list(out["legit_share"]) == pytest.approx([1 / 3, 2 / 3, 0.0, 0.0, 0.0])
    assert out["lower"][0] == -math.inf and out["upper"].iloc[-1] == math.inf
    assert list(out["lower"][1:]) == [10, 100, 1000, 5000]


def test_bin_labels_name_the_open_ends():
    assert tables.bin_labels([1, 2.5, 10]) == ["< 1", "1-2.5", "2.5-10", ">= 10"]


def test_log_edges_are_geometric_and_end_on_the_bounds():
    assert tables.log_edges(1, 1000, 3) == pytest.approx([1, 10, 100, 1000])


def test_probability_edges_cut_0_1_into_equal_bins():
    assert tables.probability_edges(4) == [0.25, 0.5, 0.75]


@pytest.mark.spark
def test_quantiles_by_label_gives_one_row_per_label(spark):
    df = spark.createDataFrame([(float(a), 0) for a in range(1, 6)] + [(100.0, 1)], "amount double, fraud int")
    out = tables.quantiles_by_label(df, "amount", [0.5, 1.0]).toPandas()
    assert out.to_dict("records") == [{"fraud": 0, "rows": 5, "p50": 3.0, "p100": 5.0},
                                      {"fraud": 1, "rows": 1, "p50": 100.0, "p100": 100.0}]


@pytest.mark.spark
def test_worst_false_positives_are_the_surest_flagged_legitimate_rows(spark):
    scored = scored_rows(spark, [("a", 0, 0.95), ("b", 0, 0.99), ("c", 1, 0.99), ("d", 0, 0.6), ("e", 0, 0.4),
                                 ("f", 0, 0.95)])
    out = tables.worst_errors(scored, 0.5, "false_positive", n=3).toPandas()
    assert list(out["transaction_id"]) == ["b", "a", "f"]  # ties by id
    assert list(out.columns) == ["transaction_id", "step", "amount", "fraud", "fraud_probability"]


@pytest.mark.spark
def test_worst_false_negatives_are_the_surest_missed_frauds(spark):
    scored = scored_rows(spark, [("a", 1, 0.3), ("b", 1, 0.01), ("c", 0, 0.001), ("d", 1, 0.5), ("e", 1, 0.2)])
    out = tables.worst_errors(scored, 0.5, "false_negative", n=10).toPandas()
    assert list(out["transaction_id"]) == ["b", "e", "a"]  # d is flagged: p >= threshold


def test_worst_errors_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        tables.worst_errors(SimpleNamespace(columns=[]), 0.5, "true_positive")

