"""score_claims.py through the real spark-submit: each input format, each output format, the summary counts.

One small batch (planted duplicate, outlier, spike and fraud-like claims) is
written as a BankSim CSV, as JSON lines and as prepared Parquet, with bad rows
appended to the text inputs. A logistic-regression model is fitted once on
synthetic rows and saved the way fit_model.py saves one
(``fraudlab.train.pipeline.save_logistic_model``: ``metrics.json`` with the
threshold and ``drift_reference.json`` beside the PipelineModel).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path

import pytest

from fraudlab import drift as fdrift
from fraudlab.train import pipeline as train_pipeline
from fraudlab.schemas import PREPARED_SCHEMA, SCORED_COLUMNS
from tests.conftest import kill_spark_app_when, run_python_app
from tests.test_bad_input import assert_refused, earlier_output, tree_digest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: Tiny inputs: no UI, few shuffle partitions.
SUBMIT_ARGS = ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2"]

HEADER = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"
THRESHOLD = 0.5

# (step, customer, merchant, category, amount, fraud)
REGULAR = [(step, f"C10{c}", "M85975013", "es_food", round(11 + 3 * c + 0.37 * step, 2), 0)
           for c in range(5) for step in range(8)]
PLANTED = [
    (2, "C200", "M1053599405", "es_health", 77.70, 0),   # original ...
    (5, "C200", "M1053599405", "es_health", 77.70, 0),   # ... and its duplicate, 3 steps later
    (0, "C201", "M1053599405", "es_health", 66.60, 0),   # repeated 9 steps later:
    (9, "C201", "M1053599405", "es_health", 66.60, 0),   # outside the 7-step window, not a duplicate
    (3, "C202", "M85975013", "es_food", 500.00, 0),      # far above the food amounts: an outlier
    (8, "C100", "M85975013", "es_food", 200.00, 0),      # > 5x C100's earlier mean: a spike (and an outlier)
    (4, "C203", "M480139044", "es_health", 850.00, 1),   # what the model learnt fraud looks like
]
CLAIMS = REGULAR + PLANTED
BAD_CSV = [
    "0,'C1','4','M','28007'",
    "3,'C1','4','M','28007','M1','28007','es_food',-2.00,0",
    "3,'C1','4','M','28007','M1','28007','es_casino',1.00,0",
]
BAD_JSON = [
    "{not json",
    json.dumps({"step": 1, "customer": "C1", "age": "9", "gender": "F", "zipcodeOri": "28007",
                "merchant": "M1", "zipMerchant": "28007", "category": "es_food", "amount": 1.0, "fraud": 0}),
    json.dumps({"step": 1, "customer": "C1"}),
    "",
]


def prepared_rows(data, start=dt.datetime(2024, 1, 1)):
    rows = []
    for i, (step, customer, merchant, category, amount, fraud) in enumerate(data):
        when = start + dt.timedelta(days=step)
        rows.append((f"id{i}", step, customer, "2", "F", "28007", merchant, "28007", category, float(amount),
                     fraud, when, when.strftime("%Y-%m")))
    return rows


def training_data(seed=11):
    """Legitimate food and health payments; frauds are large payments at M480139044."""
    rng = random.Random(seed)
    data = []
    for c in range(12):
        for step in range(12):
            data.append((step, f"C{c}", "M85975013", "es_food", round(rng.uniform(5, 60), 2), 0))
            if rng.random() < 0.3:
                data.append((step, f"C{c}", "M1053599405", "es_health", round(rng.uniform(40, 160), 2), 0))
            if rng.random() < 0.08:
                data.append((step, f"C{c}", "M480139044", "es_health", round(rng.uniform(400, 900), 2), 1))
    return data


@pytest.fixture(scope="module")
def model_dir(spark, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "fraud_model"
    train_pipeline.save_logistic_model(spark.createDataFrame(prepared_rows(training_data()), PREPARED_SCHEMA),
                                       str(out), THRESHOLD)
    return out


def csv_line(step, customer, merchant, category, amount, fraud):
    return f"{step},'{customer}','2','F','28007','{merchant}','28007','{category}',{amount:.2f},{fraud}"


def json_line(step, customer, merchant, category, amount, fraud):
    return json.dumps({"step": step, "customer": customer, "age": "2", "gender": "F", "zipcodeOri": "28007",
                       "merchant": merchant, "zipMerchant": "28007", "category": category, "amount": amount,
                       "fraud": fraud})


@pytest.fixture(scope="module")
def inputs(spark, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("claims")
    csv_file = root / "claims.csv"
    csv_file.write_bytes("".join(f"{line}\r\n" for line in
                                 [HEADER, *(csv_line(*c) for c in CLAIMS), *BAD_CSV]).encode())
    json_file = root / "claims.json"
    json_file.write_text("".join(f"{line}\n" for line in [*(json_line(*c) for c in CLAIMS), *BAD_JSON]))
    parquet_dir = root / "prepared"
    (spark.createDataFrame(prepared_rows(CLAIMS), PREPARED_SCHEMA)
     .write.partitionBy("event_month").parquet(str(parquet_dir)))
    return {"csv": csv_file, "json": json_file, "parquet": parquet_dir}


def score(spark_submit, model_dir, input_path, fmt, output, output_format, *extra):
    proc = spark_submit("score_claims.py", "--input", str(input_path), "--format", fmt, "--output", str(output),
                        "--output-format", output_format, "--model", str(model_dir), *extra,
                        extra_submit_args=SUBMIT_ARGS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((output / "_metrics.json").read_text()), proc


@pytest.fixture(scope="module")
def csv_run(spark_submit, model_dir, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored_csv_in") / "scored"
    return (out, *score(spark_submit, model_dir, inputs["csv"], "csv", out, "parquet"))


def expected_counts(rows) -> dict[str, int]:
    """What the summary should say, counted from the written rows themselves."""
    return {
        "claims_processed": len(rows),
        "flagged": sum(bool(r["flagged"]) for r in rows),
        "high_risk": sum(r["risk_tier"] == "high" for r in rows),
        "duplicates": sum(bool(r["duplicate_claim"]) for r in rows),
    }


def planted(rows, step, customer, amount):
    [row] = [r for r in rows if (r["step"], r["customer"], round(r["amount"], 2)) == (step, customer, amount)]
    return row


def check_signals(rows):
    """The planted claims fire the rules they were built for, and the regular ones none."""
    assert planted(rows, 5, "C200", 77.70)["duplicate_claim"] and not planted(rows, 2, "C200", 77.70)["duplicate_claim"]
    assert not planted(rows, 9, "C201", 66.60)["duplicate_claim"]
    assert planted(rows, 3, "C202", 500.00)["amount_outlier"]
    spike = planted(rows, 8, "C100", 200.00)
    assert spike["customer_amount_spike"] and spike["amount_outlier"] and spike["flagged"]
    fraud_like = planted(rows, 4, "C203", 850.00)
    assert fraud_like["risk_tier"] == "high" and "model_score" in fraud_like["reasons"]
    regular = [r for r in rows if r["customer"].startswith("C10") and r["step"] < 8]
    assert len(regular) == len(REGULAR) and not any(r["duplicate_claim"] or r["amount_outlier"] for r in regular)


def test_csv_input_counts_add_up_and_bad_rows_are_quarantined(csv_run, spark):
    out, metrics, proc = csv_run
    rows = spark.read.parquet(str(out)).collect()
    assert {k: metrics[k] for k in ("claims_processed", "flagged", "high_risk", "duplicates")} == expected_counts(rows)
    assert metrics["claims_processed"] == len(CLAIMS) and metrics["duplicates"] == 1
    assert metrics["rows_quarantined"] == len(BAD_CSV)
    assert metrics["rows_in"] == metrics["claims_processed"] + metrics["rows_quarantined"]
    assert metrics["rows_in"] == len(CLAIMS) + len(BAD_CSV)
    quarantined = {r["raw_line"]: r["reason"] for r in spark.read.json(f"{out}_quarantine").collect()}
    assert quarantined == {BAD_CSV[0]: "expected 10 fields, found 5", BAD_CSV[1]: "amount is negative",
                           BAD_CSV[2]: "category is unknown"}
    # spark-submit passes the Python driver's log (stderr) on through its own stdout.
    assert f"claims_processed={len(CLAIMS)} flagged={metrics['flagged']}" in proc.stdout + proc.stderr
    check_signals(rows)


def test_parquet_output_is_partitioned_by_month_with_the_contract_columns(csv_run, spark, model_dir):
    out, metrics, _ = csv_run
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["event_month=2024-01"]
    df = spark.read.parquet(str(out))
    assert sorted(df.columns) == sorted(SCORED_COLUMNS)
    # A model loaded from a folder never registered is named by its path.
    assert {r["model_version"] for r in df.select("model_version").distinct().collect()} == {str(model_dir)}
    assert metrics["model_version"] == str(model_dir)
    assert metrics["threshold"] == THRESHOLD and metrics["format"] == "csv"


def test_summary_reports_drift_per_model_feature(csv_run, model_dir, spark):
    out, metrics, _ = csv_run
    assert set(metrics["drift"]) == set(fdrift.DRIFT_FEATURES)
    assert set(metrics["drift_status"].values()) <= {"stable", "moderate", "significant"}
    # The amount's PSI, recomputed here from the scored rows and the training bins.
    reference = json.loads((model_dir / "drift_reference.json").read_text())["features"]["amount"]
    amounts = [r["amount"] for r in spark.read.parquet(str(out)).select("amount").collect()]
    counts = [0] * (len(reference["edges"]) + 1)
    for amount in amounts:
        counts[sum(amount >= edge for edge in reference["edges"])] += 1
    expected = fdrift.population_stability_index(reference["shares"], [c / len(amounts) for c in counts])
    assert metrics["drift"]["amount"] == pytest.approx(expected, abs=1e-5)


def test_json_input_to_json_output(spark_submit, model_dir, inputs, tmp_path, spark, csv_run):
    out = tmp_path / "scored"
    metrics, _ = score(spark_submit, model_dir, inputs["json"], "json", out, "json",
                       "--quarantine", str(tmp_path / "rejected"))
    rows = spark.read.json(str(out)).collect()
    assert {k: metrics[k] for k in ("claims_processed", "flagged", "high_risk", "duplicates")} == expected_counts(rows)
    assert metrics["rows_quarantined"] == len(BAD_JSON)
    assert metrics["rows_in"] == metrics["claims_processed"] + metrics["rows_quarantined"]
    assert metrics["rows_in"] == len(CLAIMS) + len(BAD_JSON)
    reasons = {r["raw_line"]: r["reason"] for r in spark.read.json(str(tmp_path / "rejected")).collect()}
    assert reasons.keys() == set(BAD_JSON)
    assert reasons["{not json"] == "not a JSON object" and reasons[""] == "empty line"
    assert reasons[BAD_JSON[1]] == "age is not one of 0-6 or U"
    assert "amount is missing" in reasons[BAD_JSON[2]] and "merchant id" in reasons[BAD_JSON[2]]
    check_signals(rows)
    # The same claims give the same decisions whichever text format they came in.
    assert {k: metrics[k] for k in ("flagged", "high_risk", "duplicates")} == {
        k: csv_run[1][k] for k in ("flagged", "high_risk", "duplicates")}


def test_parquet_input_to_csv_output(spark_submit, model_dir, inputs, tmp_path, spark):
    out = tmp_path / "scored"
    metrics, _ = score(spark_submit, model_dir, inputs["parquet"], "parquet", out, "csv",
                       "--duplicate-window-steps", "10", "--zscore-threshold", "1000")
    header = next(p for p in out.glob("part-*.csv") if p.stat().st_size).read_text().splitlines()[0]
    assert header.split(",") == SCORED_COLUMNS
    rows = spark.read.option("header", True).csv(str(out)).collect()
    assert metrics["claims_processed"] == len(rows) == len(CLAIMS)
    assert "rows_in" not in metrics and "rows_quarantined" not in metrics
    # A wider window catches the 9-step repeat too; a huge z threshold silences the outlier rule.
    assert metrics["duplicates"] == 2 and metrics["signals"]["amount_outlier"] == 0
    assert metrics["flagged"] == sum(r["flagged"] == "true" for r in rows)
    [late_repeat] = [r for r in rows if r["transaction_id"] == f"id{CLAIMS.index(PLANTED[3])}"]
    assert late_repeat["duplicate_claim"] == "true" and "duplicate_claim" in late_repeat["reasons"].split("|")


def test_bad_rule_weight_is_refused_before_spark_starts():
    assert run_python_app("score_claims.py", "--rule-weight", "velocity=0.3").returncode == 2
    assert run_python_app("score_claims.py", "--rule-weight", "amount_outlier=2").returncode == 2


def test_score_claims_refuses_a_file_that_is_not_parquet(spark_submit, tmp_path, model_dir):
    binary = tmp_path / "claims.parquet"
    binary.write_bytes(bytes(range(256)) * 64)
    output = earlier_output(tmp_path / "scored")
    before = tree_digest(output)
    proc = spark_submit("score_claims.py", "--input", str(binary), "--format", "parquet", "--output", str(output),
                        "--model", str(model_dir))
    assert_refused(proc, "claims.parquet", "not a Parquet data set")
    assert tree_digest(output) == before


def test_score_claims_of_a_header_only_file_keeps_the_earlier_output(spark_submit, tmp_path, model_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER + "\n")
    output = earlier_output(tmp_path / "scored")
    before = tree_digest(output)
    proc = spark_submit("score_claims.py", "--input", str(empty), "--format", "csv", "--output", str(output),
                        "--model", str(model_dir))
    assert_refused(proc, "--input", "no claims to score")
    assert tree_digest(output) == before
    assert not (tmp_path / "scored_quarantine").exists()


def test_score_claims_refuses_an_output_that_is_its_input(spark_submit, tmp_path, model_dir):
    raw_csv = tmp_path / "raw" / "claims.csv"
    raw_csv.parent.mkdir()
    raw_csv.write_text(HEADER + "\n" + csv_line(1, "C1", "M85975013", "es_food", 12.5, 0) + "\n")
    before = tree_digest(raw_csv.parent)
    proc = spark_submit("score_claims.py", "--input", str(raw_csv), "--format", "csv",
                        "--output", str(raw_csv.parent), "--model", str(model_dir))
    assert_refused(proc, "--output", "contains --input")
    assert tree_digest(raw_csv.parent) == before


def staging_has_files(output: Path):
    """True once the run writes into its staging folder beside ``output`` (Spark's task files)."""
    return lambda: any(any(p.is_file() for p in staging.rglob("*"))
                       for staging in output.parent.glob(f".{output.name}.staging-*"))


def test_score_claims_killed_mid_write_keeps_the_earlier_output_and_a_rerun_succeeds(
        spark_submit, model_dir, inputs, csv_run, tmp_path):
    output = tmp_path / "scored"
    shutil.copytree(csv_run[0], output)
    before = tree_digest(output)
    kill_spark_app_when("score_claims.py", "--input", str(inputs["csv"]), "--format", "csv",
                        "--output", str(output), "--model", str(model_dir),
                        ready=staging_has_files(output), extra_submit_args=SUBMIT_ARGS)
    assert tree_digest(output) == before
    metrics, _ = score(spark_submit, model_dir, inputs["csv"], "csv", output, "parquet")
    assert metrics["claims_processed"] == len(CLAIMS)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "scored", "scored_quarantine"]


def test_score_claims_refuses_a_model_that_failed_its_gate(spark_submit, model_dir, inputs, tmp_path):
    rejected = tmp_path / "fraud_model_rejected"
    shutil.copytree(model_dir, rejected)
    metrics = json.loads((rejected / "metrics.json").read_text())
    metrics["gate"] = {"passed": False, "failed": ["min_average_precision"]}
    (rejected / "metrics.json").write_text(json.dumps(metrics))
    (rejected / ".metrics.json.crc").unlink()  # edited by hand: its checksum is stale
    output = earlier_output(tmp_path / "scored")
    before = tree_digest(output)
    proc = spark_submit("score_claims.py", "--input", str(inputs["csv"]), "--format", "csv",
                        "--output", str(output), "--model", str(rejected))
    assert_refused(proc, "fraud_model_rejected", "failed its validation gate (min_average_precision)")
    assert tree_digest(output) == before


def test_a_model_folder_that_does_not_load_is_one_line_without_the_jvm_stack(spark_submit, model_dir, inputs,
                                                                             tmp_path):
    broken = tmp_path / "fraud_model"
    broken.mkdir()
    shutil.copy(model_dir / "metrics.json", broken / "metrics.json")  # a passed gate, but no model files
    output = earlier_output(tmp_path / "scored")
    before = tree_digest(output)
    proc = spark_submit("score_claims.py", "--input", str(inputs["csv"]), "--format", "csv",
                        "--output", str(output), "--model", str(broken))
    assert_refused(proc, "cannot load model", str(broken))
    assert "\tat org.apache" not in proc.stderr
    assert tree_digest(output) == before
