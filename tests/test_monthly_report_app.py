"""monthly_report.py through the real spark-submit: known numbers, an idempotent re-run, an empty month.

The scored input is written here from hand-built rows (February: six claims
whose figures are worked out below; March: one claim that must not leak in).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from fraudlab.schemas import SCORED_COLUMNS, SCORED_SCHEMA
from fraudlab.scoring import RULES
from tests.conftest import kill_spark_app_when, run_python_app
from tests.test_bad_input import assert_refused

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: Tiny inputs: no UI, few shuffle partitions.
SUBMIT_ARGS = ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2"]

START = dt.datetime(2024, 1, 1)
TABLES = ["daily_volumes.csv", "duplicate_claims.csv", "flagged_by_signal.csv", "high_risk_merchants.csv"]


def claim(tid, step, merchant, amount, score, tier, flagged, reasons, fraud, duplicate_of=None):
    when = START + dt.timedelta(days=step)
    row = dict.fromkeys(SCORED_COLUMNS)
    row.update(
        transaction_id=tid, step=step, customer=f"C{tid}", age="2", gender="F", merchant=merchant,
        category="es_health", amount=amount, fraud=fraud, event_time=when, event_month=when.strftime("%Y-%m"),
        fraud_probability=score, amount_zscore=0.0, amount_over_customer_mean=1.0, fraud_score=score,
        risk_tier=tier, flagged=flagged, reasons=reasons, model_version="3", duplicate_of=duplicate_of,
        **{rule: rule in reasons for rule in RULES},
    )
    return row


CLAIMS = [  # steps 31..34 are 2024-02-01..04
    claim("a", 31, "M1", 100.0, 0.90, "high", True, ["model_score", "amount_outlier"], 1),
    claim("e", 31, "M2", 30.0, 0.10, "low", False, [], 0),
    claim("b", 32, "M1", 50.0, 0.60, "medium", True, ["model_score"], 0),
    claim("c", 33, "M1", 20.0, 0.10, "low", False, [], 0),
    claim("f", 33, "M3", 1000.0, 0.95, "high", True, ["model_score", "customer_amount_spike"], 0),
    claim("d", 34, "M2", 30.0, 0.30, "low", True, ["duplicate_claim"], None, duplicate_of="e"),
    claim("g", 62, "M1", 999.0, 0.99, "high", True, ["model_score"], 1),  # March
]


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scored") / "claims"
    spark.createDataFrame(CLAIMS, SCORED_SCHEMA).write.partitionBy("event_month").parquet(str(path))
    return path


@pytest.fixture(scope="module")
def reports_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    other = root / "month=2024-03"
    other.mkdir()
    (other / "report.json").write_text("{}")  # another month's report: must survive a February run
    return root


def run_report(spark_submit, scored, root, month):
    proc = spark_submit("monthly_report.py", "--input", str(scored), "--month", month, "--output", str(root),
                        "--top-merchants", "2", extra_submit_args=SUBMIT_ARGS)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return root / f"month={month}"


@pytest.fixture(scope="module")
def february(spark_submit, scored, reports_root) -> Path:
    month_dir = run_report(spark_submit, scored, reports_root, "2024-02")
    (month_dir / "stale.csv").write_text("left by an older run")
    return month_dir


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_report_numbers_for_a_known_month(february):
    report = json.loads((february / "report.json").read_text())
    assert report["month"] == "2024-02" and report["has_data"] is True and "message" not in report
    summary = report["summary"]
    assert {k: summary[k] for k in ("claims", "total_amount", "flagged", "flagged_amount", "high_risk",
                                    "medium_risk", "low_risk", "duplicates", "labelled", "frauds",
                                    "flagged_frauds")} == {
        "claims": 6, "total_amount": 1230.0, "flagged": 4, "flagged_amount": 1180.0, "high_risk": 2,
        "medium_risk": 1, "low_risk": 3, "duplicates": 1, "labelled": 5, "frauds": 1, "flagged_frauds": 1}
    assert summary["alert_precision"] == pytest.approx(1 / 3)
    assert {r["signal"]: r["claims"] for r in report["flagged_by_signal"]} == {
        "model_score": 3, "amount_outlier": 1, "duplicate_claim": 1, "customer_amount_spike": 1}
    assert [m["merchant"] for m in report["high_risk_merchants"]] == ["M1", "M3"]
    assert report["duplicate_claims"] == {"count": 1, "amount": 30.0}
    assert report["model_versions"] == ["3"]


def test_report_tables_and_chart_are_written(february):
    assert sorted(p.name for p in february.iterdir() if p.name != "stale.csv") == sorted(
        ["report.json", "chart.png", *TABLES])
    assert (february / "chart.png").read_bytes().startswith(b"\x89PNG")
    duplicates = read_csv(february / "duplicate_claims.csv")
    assert [(r["transaction_id"], r["duplicate_of"], r["amount"]) for r in duplicates] == [("d", "e", "30.0")]
    daily = read_csv(february / "daily_volumes.csv")
    assert [(r["event_date"], r["claims"], r["flagged"]) for r in daily] == [
        ("2024-02-01", "2", "1"), ("2024-02-02", "1", "1"), ("2024-02-03", "2", "1"), ("2024-02-04", "1", "1")]


def test_rerun_rewrites_the_month_and_nothing_else(february, spark_submit, scored, reports_root):
    before = {p.name: p.read_bytes() for p in february.iterdir() if p.name != "stale.csv"}
    run_report(spark_submit, scored, reports_root, "2024-02")
    after = {p.name: p.read_bytes() for p in february.iterdir()}
    assert after == before  # same bytes, and the stale file of the older run is gone
    assert (reports_root / "month=2024-03" / "report.json").read_text() == "{}"


def test_month_without_data_writes_an_empty_report(spark_submit, scored, reports_root):
    month_dir = run_report(spark_submit, scored, reports_root, "2024-05")
    report = json.loads((month_dir / "report.json").read_text())
    assert report["has_data"] is False and "no scored claims for 2024-05" in report["message"]
    assert report["summary"]["claims"] == 0 and report["summary"]["alert_precision"] is None
    assert report["high_risk_merchants"] == [] and report["duplicate_claims"] == {"count": 0, "amount": 0}
    assert [r["claims"] for r in report["flagged_by_signal"]] == [0, 0, 0, 0]
    assert read_csv(month_dir / "duplicate_claims.csv") == []
    assert (month_dir / "duplicate_claims.csv").read_text().startswith("transaction_id,duplicate_of,")
    assert (month_dir / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_bad_month_is_refused_before_spark_starts(scored, tmp_path):
    for month in ("2024-13", "2024-2", "March"):
        proc = run_python_app("monthly_report.py", "--input", str(scored), "--month", month, "--output", str(tmp_path))
        assert proc.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_report_killed_mid_run_keeps_the_earlier_month_and_a_rerun_succeeds(february, spark_submit, scored,
                                                                             reports_root):
    run_report(spark_submit, scored, reports_root, "2024-02")
    before = {p.name: p.read_bytes() for p in february.iterdir()}
    kill_spark_app_when("monthly_report.py", "--input", str(scored), "--month", "2024-02",
                        "--output", str(reports_root), "--top-merchants", "2",
                        ready=lambda: any(reports_root.glob(".month=2024-02.staging-*")),
                        extra_submit_args=SUBMIT_ARGS)
    assert {p.name: p.read_bytes() for p in february.iterdir()} == before
    run_report(spark_submit, scored, reports_root, "2024-02")
    assert {p.name: p.read_bytes() for p in february.iterdir()} == before


def test_report_of_data_in_another_format_is_refused_and_keeps_the_month(february, spark_submit, scored,
                                                                          reports_root):
    run_report(spark_submit, scored, reports_root, "2024-02")
    before = {p.name: p.read_bytes() for p in february.iterdir()}
    for fmt in ("json", "csv"):
        proc = spark_submit("monthly_report.py", "--input", str(scored), "--format", fmt, "--month", "2024-02",
                            "--output", str(reports_root), extra_submit_args=SUBMIT_ARGS)
        assert_refused(proc, "--input", f"does not read as {fmt}")
        assert {p.name: p.read_bytes() for p in february.iterdir()} == before
