"""Report aggregations on a hand-built month of scored claims, with every figure worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudlab import reports
from fraudlab.schemas import SCORED_COLUMNS, SCORED_SCHEMA
from fraudlab.scoring import RULES

pytestmark = pytest.mark.spark

START = dt.datetime(2024, 1, 1)


def claim(tid, step, merchant, category, amount, score, tier, flagged, reasons, fraud, duplicate_of=None):
    when = START + dt.timedelta(days=step)
    row = dict.fromkeys(SCORED_COLUMNS)
    row.update(
        transaction_id=tid, step=step, customer=f"C{tid}", age="2", gender="F", merchant=merchant,
        category=category, amount=amount, fraud=fraud, event_time=when, event_month=when.strftime("%Y-%m"),
        fraud_probability=score, amount_zscore=0.0, amount_over_customer_mean=1.0, fraud_score=score,
        risk_tier=tier, flagged=flagged, reasons=reasons, model_version="3", duplicate_of=duplicate_of,
        **{rule: rule in reasons for rule in RULES},
    )
    return row


# Steps 31..34 are 2024-02-01..04; "g" (step 62) is in March.
CLAIMS = [
    claim("a", 31, "M1", "es_health", 100.0, 0.90, "high", True, ["model_score", "amount_outlier"], 1),
    claim("e", 31, "M2", "es_food", 30.0, 0.10, "low", False, [], 0),
    claim("b", 32, "M1", "es_health", 50.0, 0.60, "medium", True, ["model_score"], 0),
    claim("c", 33, "M1", "es_health", 20.0, 0.10, "low", False, [], 0),
    claim("f", 33, "M3", "es_travel", 1000.0, 0.95, "high", True, ["model_score", "customer_amount_spike"], 0),
    claim("d", 34, "M2", "es_food", 30.0, 0.30, "low", True, ["duplicate_claim"], None, duplicate_of="e"),
    claim("g", 62, "M1", "es_health", 999.0, 0.99, "high", True, ["model_score"], 1),
]


@pytest.fixture(scope="module")
def february(spark):
    scored = spark.createDataFrame(CLAIMS, SCORED_SCHEMA)
    return reports.month_claims(scored, "2024-02").cache()


def test_month_claims_keeps_only_that_month(february):
    assert sorted(r["transaction_id"] for r in february.collect()) == ["a", "b", "c", "d", "e", "f"]


def test_summary_counts_volumes_tiers_signals_and_precision(february):
    row = reports.summary(february).first().asDict()
    assert row == {
        "claims": 6, "total_amount": 1230.0, "flagged": 4, "flagged_amount": 1180.0,
        "high_risk": 2, "medium_risk": 1, "low_risk": 3, "duplicates": 1,
        "model_score": 3, "amount_outlier": 1, "duplicate_claim": 1, "customer_amount_spike": 1,
        "labelled": 5, "frauds": 1, "flagged_labelled": 3, "flagged_frauds": 1,
        "alert_precision": pytest.approx(1 / 3), "fraud_recall": 1.0,
    }


def test_summary_of_no_claims_is_zeros_with_null_ratios(spark):
    row = reports.summary(spark.createDataFrame([], SCORED_SCHEMA)).first().asDict()
    assert row["claims"] == 0 and row["flagged"] == 0 and row["total_amount"] == 0.0
    assert row["alert_precision"] is None and row["fraud_recall"] is None


def test_flagged_by_signal_lists_every_signal_in_order(february):
    rows = [r.asDict() for r in reports.flagged_by_signal(february).collect()]
    assert rows == [
        {"signal": "model_score", "claims": 3, "amount": 1150.0, "labelled": 3, "frauds": 1,
         "precision": pytest.approx(1 / 3)},
        {"signal": "amount_outlier", "claims": 1, "amount": 100.0, "labelled": 1, "frauds": 1, "precision": 1.0},
        {"signal": "duplicate_claim", "claims": 1, "amount": 30.0, "labelled": 0, "frauds": 0, "precision": None},
        {"signal": "customer_amount_spike", "claims": 1, "amount": 1000.0, "labelled": 1, "frauds": 0,
         "precision": 0.0},
    ]


def test_high_risk_merchants_ranked_and_limited(february):
    rows = [r.asDict() for r in reports.high_risk_merchants(february, top_n=None).collect()]
    assert [r["merchant"] for r in rows] == ["M1", "M3", "M2"]  # M1 and M3 tie on high risk; M1 has more flagged
    assert rows[0] == {"merchant": "M1", "category": "es_health", "claims": 3, "flagged": 2, "high_risk": 1,
                       "flagged_share": 0.6667, "flagged_amount": 150.0, "mean_fraud_score": 0.5333, "frauds": 1,
                       "alert_precision": 0.5}
    assert rows[2]["alert_precision"] is None  # M2's only flagged claim has no label
    top = reports.high_risk_merchants(february, top_n=2).collect()
    assert [r["merchant"] for r in top] == ["M1", "M3"]


def test_duplicate_claims_table_names_the_original(february):
    rows = reports.duplicate_claims(february).collect()
    assert [(r["transaction_id"], r["duplicate_of"], r["amount"]) for r in rows] == [("d", "e", 30.0)]


def test_daily_volumes_per_date(february):
    rows = [(str(r["event_date"]), r["claims"], r["flagged"], r["high_risk"], r["amount"], r["flagged_amount"],
             r["frauds"]) for r in reports.daily_volumes(february).collect()]
    assert rows == [
        ("2024-02-01", 2, 1, 1, 130.0, 100.0, 1),
        ("2024-02-02", 1, 1, 0, 50.0, 50.0, 0),
        ("2024-02-03", 2, 1, 1, 1020.0, 1000.0, 0),
        ("2024-02-04", 1, 1, 0, 30.0, 30.0, 0),
    ]


def test_csv_text_and_chart():
    text = reports.to_csv_text(["a", "b", "c"], [{"a": 1, "b": None, "c": ["x", "y"]},
                                                 {"a": 2, "b": dt.date(2024, 2, 1), "c": []}])
    assert text == "a,b,c\n1,,x|y\n2,2024-02-01,\n"
    by_signal = [{"signal": "model_score", "claims": 3}, {"signal": "duplicate_claim", "claims": 1}]
    png = reports.chart_png("2024-02", [{"event_date": "2024-02-01", "claims": 2, "flagged": 1}], by_signal)
    empty = reports.chart_png("2024-05", [], by_signal)
    assert png.startswith(b"\x89PNG") and empty.startswith(b"\x89PNG") and png != empty
