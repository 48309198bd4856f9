"""Drift: the training reference saved with a model, and the PSI of new data against it, on inline rows."""

from __future__ import annotations

import math
import random

import pytest

from fraudlab.drift import (
    bin_shares,
    drift_bin_counts,
    drift_reference,
    population_stability,
    population_stability_index,
)

pytestmark = pytest.mark.spark


def test_drift_reference_holds_decile_edges_and_training_shares(spark):
    df = spark.createDataFrame([(float(v), float(v % 3), None) for v in range(1, 101)],
                               "amount double, count double, empty double")
    reference = drift_reference(df, columns=["amount", "count", "empty"])
    amount = reference["features"]["amount"]
    assert amount["edges"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert amount["shares"] == pytest.approx([0.09] + [0.1] * 8 + [0.11])
    count = reference["features"]["count"]
    assert count["edges"] == [0.0, 1.0, 2.0]  # repeated deciles merged
    assert sum(count["shares"]) == pytest.approx(1.0)
    assert len(count["shares"]) == len(count["edges"]) + 1
    assert reference["rows"] == 100
    assert reference["features"]["empty"] == {"edges": [], "shares": [0.0]}
    assert bin_shares(df, "count", [1.0]) == pytest.approx([0.33, 0.67])
    assert population_stability_index(amount["shares"], amount["shares"]) == 0.0
    assert population_stability_index(amount["shares"], [1.0] + [0.0] * 9) > 1.0


def test_psi_arithmetic_on_known_counts():
    reference = {"features": {"amount": {"edges": [10.0], "shares": [0.5, 0.5]}}}
    same = population_stability([{"feature": "amount", "bin": 0, "rows": 50},
                                 {"feature": "amount", "bin": 1, "rows": 50}], reference)
    assert same["amount"]["psi"] == pytest.approx(0.0)
    assert same["amount"]["status"] == "stable"
    shifted = population_stability([{"feature": "amount", "bin": 0, "rows": 90},
                                    {"feature": "amount", "bin": 1, "rows": 10}], reference)
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert shifted["amount"]["psi"] == pytest.approx(expected)
    assert shifted["amount"]["status"] == "significant"
    assert shifted["amount"]["rows"] == 100 and shifted["amount"]["shares"] == [0.9, 0.1]


def test_bins_match_bucketizer_edges(spark):
    # Edges 1, 2: bins [-inf, 1), [1, 2), [2, +inf]; a value on an edge goes up; null and NaN are left out.
    reference = {"features": {"x": {"edges": [1.0, 2.0], "shares": [0.2, 0.4, 0.4]}}}
    df = spark.createDataFrame([(v,) for v in (-5.0, 0.99, 1.0, 1.5, 2.0, 99.0, None, float("nan"))], "x double")
    counts = {r["bin"]: r["rows"] for r in drift_bin_counts(df, reference).collect()}
    assert counts == {0: 2, 1: 2, 2: 2}
    assert bin_shares(df, "x", [1.0, 2.0]) == [c / 6 for c in (2, 2, 2)]


def drift_frame(spark, scale=1.0, n=400):
    rng = random.Random(3)
    rows = [(rng.lognormvariate(3.0, 0.8) * scale, rng.gauss(0, 1), float(rng.randint(0, 30))) for _ in range(n)]
    return spark.createDataFrame(rows, "amount double, amount_zscore double, customer_prior_count double")


def test_psi_is_zero_on_the_training_distribution_and_large_when_shifted(spark):
    train = drift_frame(spark)
    reference = drift_reference(train, columns=["amount", "amount_zscore", "customer_prior_count"])
    same = population_stability(drift_bin_counts(train, reference).collect(), reference)
    assert set(same) == {"amount", "amount_zscore", "customer_prior_count"}
    assert all(v["psi"] == pytest.approx(0.0, abs=1e-9) for v in same.values())

    shifted = drift_frame(spark, scale=4.0)
    drift = population_stability(drift_bin_counts(shifted, reference).collect(), reference)
    assert drift["amount"]["psi"] > 1.0 and drift["amount"]["status"] == "significant"
    assert drift["amount_zscore"]["psi"] == pytest.approx(0.0, abs=1e-9)  # same draws, unscaled


def test_drift_skips_features_the_data_lacks(spark):
    reference = {"features": {"amount": {"edges": [1.0], "shares": [0.5, 0.5]},
                              "log_amount": {"edges": [0.0], "shares": [0.5, 0.5]}}}
    df = spark.createDataFrame([(0.5,), (3.0,)], "amount double")
    assert set(population_stability(drift_bin_counts(df, reference).collect(), reference)) == {"amount"}
