"""Scoring on a few inline rows: each rule signal, the combined score and its tiers, reasons, PSI, JSON claims."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.sql import functions as F

from fraudlab import features
from fraudlab.train import pipeline as train_pipeline
from fraudlab.config import DetectionConfig
from fraudlab.data.parsing import split_valid, validate
from fraudlab.schemas import PREPARED_SCHEMA, SCORED_COLUMNS, SCORED_SCHEMA
from fraudlab.scoring import (
    add_decision,
    add_rule_signals,
    flatten_scored,
    rule_weights,
    score_claims,
    split_json_fields,
    unflatten_scored,
)

pytestmark = pytest.mark.spark

RULE_INPUT = ("transaction_id string, step int, customer string, merchant string, amount double, "
              "amount_zscore double, customer_prior_count double, amount_over_customer_mean double")
DECISION_INPUT = ("transaction_id string, fraud_probability double, amount_outlier boolean, "
                  "duplicate_claim boolean, customer_amount_spike boolean")
CONFIG = DetectionConfig()  # z > 3.0, window 7, spike 5x with 5 earlier, weights .15/.10/.10, high > 0.7


def by_id(df, *columns):
    rows = df.collect()
    if len(columns) == 1:
        return {r["transaction_id"]: r[columns[0]] for r in rows}
    return {r["transaction_id"]: tuple(r[c] for c in columns) for r in rows}


def rule_rows(spark, data):
    """Rows with only what the rules read: (id, step, customer, merchant, amount[, z, prior count, ratio])."""
    full = [row + (0.0, 0.0, 1.0) if len(row) == 5 else row for row in data]
    return spark.createDataFrame(full, RULE_INPUT)


# --------------------------------------------------------------------------- rules


def test_amount_outlier_fires_only_above_the_zscore_threshold(spark):
    df = rule_rows(spark, [("hi", 0, "C1", "M1", 900.0, 3.5, 0.0, 1.0),
                           ("edge", 0, "C2", "M1", 500.0, 3.0, 0.0, 1.0),
                           ("low", 0, "C3", "M1", 0.0, -4.0, 0.0, 1.0),
                           ("none", 0, "C4", "M1", 10.0, None, 0.0, 1.0)])
    assert by_id(add_rule_signals(df, CONFIG), "amount_outlier") == {
        "hi": True, "edge": False, "low": False, "none": False}


def test_zscore_threshold_comes_from_the_config(spark):
    df = rule_rows(spark, [("a", 0, "C1", "M1", 900.0, 2.5, 0.0, 1.0)])
    assert by_id(add_rule_signals(df, DetectionConfig(zscore_threshold=2.0)), "amount_outlier") == {"a": True}


def test_duplicate_claim_marks_the_later_claim_within_the_window(spark):
    df = rule_rows(spark, [
        ("orig", 0, "C1", "M1", 10.0),
        ("dup", 3, "C1", "M1", 10.0),       # 3 steps after orig: a duplicate of it
        ("late", 20, "C1", "M1", 10.0),     # 17 steps after dup: outside the 7-step window
        ("other_amount", 1, "C1", "M1", 10.5),
        ("other_customer", 2, "C2", "M1", 10.0),
        ("other_merchant", 2, "C1", "M2", 10.0),
    ])
    out = by_id(add_rule_signals(df, CONFIG), "duplicate_claim", "duplicate_of")
    assert out == {
        "orig": (False, None),
        "dup": (True, "orig"),
        "late": (False, None),
        "other_amount": (False, None),
        "other_customer": (False, None),
        "other_merchant": (False, None),
    }


def test_duplicate_window_edge_is_inclusive_and_configurable(spark):
    df = rule_rows(spark, [("a", 0, "C1", "M1", 5.0), ("b", 7, "C1", "M1", 5.0), ("c", 15, "C1", "M1", 5.0)])
    assert by_id(add_rule_signals(df, CONFIG), "duplicate_claim") == {"a": False, "b": True, "c": False}
    narrow = DetectionConfig(duplicate_window_steps=2)
    assert by_id(add_rule_signals(df, narrow), "duplicate_claim") == {"a": False, "b": False, "c": False}


def test_duplicates_on_the_same_step_keep_one_original(spark):
    df = rule_rows(spark, [("x2", 4, "C3", "M2", 5.0), ("x1", 4, "C3", "M2", 5.0), ("x3", 5, "C3", "M2", 5.0)])
    out = by_id(add_rule_signals(df, CONFIG), "duplicate_claim", "duplicate_of")
    assert out == {"x1": (False, None), "x2": (True, "x1"), "x3": (True, "x2")}


def test_customer_amount_spike_needs_both_ratio_and_history(spark):
    df = rule_rows(spark, [
        ("spike", 9, "C1", "M1", 50.0, 0.0, 5.0, 5.0),
        ("short_history", 9, "C2", "M1", 100.0, 0.0, 4.0, 10.0),
        ("just_below", 9, "C3", "M1", 49.9, 0.0, 10.0, 4.99),
        ("no_history", 0, "C4", "M1", 49.9, 0.0, 0.0, 1.0),
    ])
    assert by_id(add_rule_signals(df, CONFIG), "customer_amount_spike") == {
        "spike": True, "short_history": False, "just_below": False, "no_history": False}


# --------------------------------------------------------------------------- combined score


def decide(spark, rows, threshold=0.5, config=CONFIG):
    return by_id(add_decision(spark.createDataFrame(rows, DECISION_INPUT), config, threshold),
                 "fraud_score", "risk_tier", "flagged", "reasons")


def test_score_tier_flag_and_reasons(spark):
    out = decide(spark, [
        ("quiet", 0.2, False, False, False),
        ("model_only", 0.6, False, False, False),
        ("rule_only", 0.2, True, False, False),
        ("both", 0.65, True, True, False),
        ("rules_lift", 0.45, True, True, True),
        ("at_high_edge", 0.7, False, False, False),
    ])
    expected = {
        "quiet": (0.2, "low", False, []),
        "model_only": (0.6, "medium", True, ["model_score"]),
        "rule_only": (1 - 0.8 * 0.85, "low", True, ["amount_outlier"]),
        "both": (1 - 0.35 * 0.85 * 0.90, "high", True, ["model_score", "amount_outlier", "duplicate_claim"]),
        "rules_lift": (1 - 0.55 * 0.85 * 0.90 * 0.90, "medium", True,
                       ["amount_outlier", "duplicate_claim", "customer_amount_spike"]),
        # 'high' is strictly above 0.7
        "at_high_edge": (0.7, "medium", True, ["model_score"]),
    }
    assert out.keys() == expected.keys()
    for key, (score, tier, flagged, reasons) in expected.items():
        assert out[key][0] == pytest.approx(score), key
        assert out[key][1:] == (tier, flagged, reasons), key


def test_score_stays_in_unit_interval_and_never_below_the_model(spark):
    grid = [(f"{p}-{a}{b}{c}", p, a, b, c)
            for p in (0.0, 0.001, 0.3, 0.999, 1.0)
            for a in (False, True) for b in (False, True) for c in (False, True)]
    heavy = DetectionConfig(rule_weights={"amount_outlier": 1.0, "duplicate_claim": 0.9, "customer_amount_spike": 0.0})
    for config in (CONFIG, heavy):
        out = decide(spark, grid, config=config)
        for key, p, *_ in grid:
            score = out[key][0]
            assert 0.0 <= score <= 1.0 and score >= p - 1e-12, (key, score)
    out = decide(spark, grid, config=heavy)
    assert out["0.0-TrueFalseFalse"][0] == 1.0  # a weight of 1 makes the rule decisive
    assert out["0.0-FalseFalseTrue"][0] == 0.0  # a weight of 0 adds nothing (but still flags)
    assert out["0.0-FalseFalseTrue"][2] is True


def test_flagged_exactly_when_reasons_are_not_empty(spark):
    grid = [(f"{p}-{a}{b}", p, a, b, False)
            for p in (0.1, 0.49, 0.5, 0.9) for a in (False, True) for b in (False, True)]
    for key, (_, _, flagged, reasons) in decide(spark, grid).items():
        assert flagged == bool(reasons), key


def test_rule_weights_are_checked():
    assert rule_weights(CONFIG) == {"amount_outlier": 0.15, "duplicate_claim": 0.10, "customer_amount_spike": 0.10}
    with pytest.raises(ValueError, match="unknown rule"):
        rule_weights(DetectionConfig(rule_weights={"velocity": 0.2}))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rule_weights(DetectionConfig(rule_weights={"amount_outlier": 1.5}))


def test_threshold_must_be_a_probability(spark):
    df = spark.createDataFrame([("a", 0.5, False, False, False)], DECISION_INPUT)
    with pytest.raises(ValueError, match="threshold"):
        add_decision(df, CONFIG, 0.0)


# --------------------------------------------------------------------------- drift


# --------------------------------------------------------------------------- JSON claims and CSV flattening


def test_json_claims_go_through_the_same_validation(spark):
    lines = spark.createDataFrame([
        ("f.json", 1, '{"step": 3, "customer": "C1", "age": "2", "gender": "F", "zipcodeOri": "28007", '
                      '"merchant": "M1", "zipMerchant": "28007", "category": "es_food", "amount": 4.55, "fraud": 0}'),
        ("f.json", 2, '{"step": -1, "customer": "X1", "age": "2", "gender": "F", "zipcodeOri": "28007", '
                      '"merchant": "M1", "zipMerchant": "28007", "category": "es_food", "amount": 4.55, "fraud": 0}'),
        ("f.json", 3, "not json at all"),
        ("f.json", 4, ""),
    ], "source_file string, line_number long, raw_line string")
    prepared, quarantine = split_valid(validate(split_json_fields(lines)))
    good = prepared.collect()
    assert [(r["step"], r["customer"], r["amount"], r["fraud"], r["event_month"]) for r in good] == [
        (3, "C1", 4.55, 0, "2024-01")]
    reasons = {r["line_number"]: r["reason"] for r in quarantine.collect()}
    assert reasons.keys() == {2, 3, 4}
    assert "step is negative" in reasons[2] and "customer id" in reasons[2]
    assert reasons[3] == "not a JSON object" and reasons[4] == "empty line"


def test_flatten_round_trip_keeps_reasons(spark):
    row = {name: None for name in SCORED_COLUMNS}
    rows = [dict(row, transaction_id="a", reasons=["model_score", "duplicate_claim"]),
            dict(row, transaction_id="b", reasons=[])]
    scored = spark.createDataFrame(rows, SCORED_SCHEMA)
    flat = flatten_scored(scored)
    assert by_id(flat, "reasons") == {"a": "model_score|duplicate_claim", "b": ""}
    assert by_id(unflatten_scored(flat), "reasons") == {"a": ["model_score", "duplicate_claim"], "b": []}


# --------------------------------------------------------------------------- score_claims with a real model


def prepared_rows(data):
    """(id, step, customer, merchant, category, amount, fraud) -> full prepared rows."""
    start = dt.datetime(2024, 1, 1)
    out = []
    for tid, step, customer, merchant, category, amount, fraud in data:
        when = start + dt.timedelta(days=step)
        out.append((tid, step, customer, "2", "F", "28007", merchant, "28007", category, float(amount), fraud,
                    when, when.strftime("%Y-%m")))
    return out


def training_data(n_customers=12, steps=12, seed=11):
    """Legitimate small food payments and frauds as large health payments."""
    rng = random.Random(seed)
    data = []
    for c in range(n_customers):
        for step in range(steps):
            data.append((f"t{c}-{step}", step, f"C{c}", "M85975013", "es_food", round(rng.uniform(5, 60), 2), 0))
            if rng.random() < 0.3:
                data.append((f"h{c}-{step}", step, f"C{c}", "M1053599405", "es_health",
                             round(rng.uniform(40, 160), 2), 0))
            if rng.random() < 0.08:
                data.append((f"f{c}-{step}", step, f"C{c}", "M480139044", "es_health",
                             round(rng.uniform(400, 900), 2), 1))
    return data


@pytest.fixture(scope="module")
def fitted(spark):
    from pyspark.ml.classification import LogisticRegression

    train = spark.createDataFrame(prepared_rows(training_data()), PREPARED_SCHEMA)
    rows = train_pipeline.add_class_weight(features.model_input(train))
    pipeline = train_pipeline.build_pipeline(LogisticRegression(maxIter=30, regParam=0.01), features.category_stats(train))
    return pipeline.fit(rows)


def test_score_claims_output_contract_and_signals(spark, fitted):
    amounts = [9.0, 10.0, 11.0, 9.5, 10.5, 10.2]  # mean 10.0333...
    batch = [(f"b{i}", i, "C100", "M85975013", "es_food", amount, 0) for i, amount in enumerate(amounts)]
    batch += [
        ("spike", 6, "C100", "M85975013", "es_food", 60.2, 0),   # 6x the customer's earlier mean
        ("dup1", 2, "C200", "M1053599405", "es_health", 77.7, 0),
        ("dup2", 5, "C200", "M1053599405", "es_health", 77.7, None),
        ("big", 3, "C300", "M480139044", "es_health", 850.0, 1),
    ]
    df = spark.createDataFrame(prepared_rows(batch), PREPARED_SCHEMA)
    scored = score_claims(fitted, df, CONFIG, threshold=0.5, model_version="7")
    assert scored.columns == SCORED_COLUMNS
    assert [f.dataType for f in scored.schema] == [f.dataType for f in SCORED_SCHEMA]
    out = {r["transaction_id"]: r for r in scored.collect()}
    assert len(out) == 10
    assert out["spike"]["customer_amount_spike"] and out["spike"]["amount_over_customer_mean"] == pytest.approx(6.0)
    assert not any(out[f"b{i}"]["customer_amount_spike"] for i in range(6))
    assert (out["dup2"]["duplicate_claim"], out["dup2"]["duplicate_of"]) == (True, "dup1")
    assert out["dup2"]["fraud"] is None and not out["dup1"]["duplicate_claim"]
    assert out["big"]["fraud_probability"] > 0.5 and "model_score" in out["big"]["reasons"]
    assert out["big"]["risk_tier"] == "high"
    assert out["b3"]["fraud_probability"] < 0.5 and out["b3"]["reasons"] == [] and out["b3"]["risk_tier"] == "low"
    for r in out.values():
        assert r["fraud_score"] >= r["fraud_probability"] - 1e-12 and 0.0 <= r["fraud_score"] <= 1.0
        assert r["flagged"] == bool(r["reasons"]) and r["model_version"] == "7"
    assert scored.where(F.col("amount_zscore").isNull()).count() == 0
