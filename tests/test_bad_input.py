"""Bad input through the real spark-submit: one line naming the flag or file, exit 2, nothing written.

Each case points the app's outputs at folders that hold an earlier, good output and checks, besides
the exit code and a stderr free of ``Traceback``/``Py4JJavaError``, that every byte of it is still there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HEADER = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud"


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (one file: itself)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def earlier_output(folder: Path) -> Path:
    """A folder standing for a good earlier output: a data file and a _metrics.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000.txt").write_text("an earlier, good output\n")
    (folder / "_metrics.json").write_text(json.dumps({"rows_out": 1}) + "\n")
    return folder


def assert_refused(proc, *words: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "Py4JJavaError" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if all(w in line for w in words)]
    assert lines, f"no line with {words} in:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "transactions.csv"
    path.write_text(HEADER + "\n" + "\n".join(
        f"{s},'C{s % 7}','2','F','28007','M{s % 3}','28007','es_food',{10 + s}.5,{int(s % 11 == 0)}"
        for s in range(40)) + "\n")
    return path


# --------------------------------------------------------------------------- flags refused before Spark starts

FLAG_CASES = [
    ("generate_transactions.py", ["--rows", "-5"], "--rows"),
    ("generate_transactions.py", ["--start-date", "2024-13-01"], "--start-date"),
    ("prepare_data.py", ["--start-date", "yesterday"], "--start-date"),
    ("score_claims.py", ["--duplicate-window-steps", "-1"], "--duplicate-window-steps"),
    ("score_claims.py", ["--high-risk-threshold", "1.5"], "--high-risk-threshold"),
    ("score_claims.py", ["--zscore-threshold", "nan"], "--zscore-threshold"),
    ("score_claims.py", ["--threshold", "-0.1"], "--threshold"),
    ("monthly_report.py", ["--month", "2024-06", "--top-merchants", "-1"], "--top-merchants"),
    ("monthly_report.py", ["--month", "June"], "--month"),
    ("fit_model.py", ["--validation-share", "1"], "--validation-share"),
    ("fit_model.py", ["--parallelism", "0"], "--parallelism"),
    ("classify_stream.py", ["--trigger-interval", "soon"], "--trigger-interval"),
    ("classify_stream.py", ["--trigger-interval", "0 seconds"], "--trigger-interval"),
    ("classify_stream.py", ["--cassandra-port", "70000"], "--cassandra-port"),
    ("stream_csv_to_kafka.py", ["--rows-per-second", "-1"], "--rows-per-second"),
    ("stream_csv_to_kafka.py", ["--limit", "-1"], "--limit"),
]


@pytest.mark.parametrize(("app", "args", "flag"), FLAG_CASES, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_bad_flag_value_is_one_line_and_exit_2(spark_submit, tmp_path, app, args, flag):
    output = earlier_output(tmp_path / "out")
    before = tree_digest(output)
    outputs = {"generate_transactions.py": ["--output", str(output / "part-00000.txt")],
               "classify_stream.py": [], "stream_csv_to_kafka.py": []}.get(app, ["--output", str(output)])
    proc = spark_submit(app, *args, *outputs)
    assert_refused(proc, flag)
    assert tree_digest(output) == before


# --------------------------------------------------------------------------- inputs and outputs


def test_prepare_data_refuses_an_output_that_holds_its_input(spark_submit, raw_csv):
    before = tree_digest(raw_csv.parent)
    proc = spark_submit("prepare_data.py", "--input", str(raw_csv), "--output", str(raw_csv.parent),
                        "--quarantine", str(raw_csv.parent.parent / "q"))
    assert_refused(proc, "--output", "contains --input")
    assert tree_digest(raw_csv.parent) == before


def test_prepare_data_refuses_a_quarantine_inside_its_input_folder(spark_submit, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + "\n")
    before = tree_digest(folder)
    proc = spark_submit("prepare_data.py", "--input", str(folder), "--output", str(tmp_path / "tx"),
                        "--quarantine", str(folder / "q"))
    assert_refused(proc, "--quarantine", "inside --input")
    assert tree_digest(folder) == before and not (tmp_path / "tx").exists()


def test_fit_model_without_its_input_says_so(spark_submit, tmp_path):
    model_dir = earlier_output(tmp_path / "model")
    before = tree_digest(model_dir)
    proc = spark_submit("fit_model.py", "--input", str(tmp_path / "missing"), "--model-dir", str(model_dir),
                        "--no-tracking")
    assert_refused(proc, "--input", "no prepared data")
    assert tree_digest(model_dir) == before


def test_fit_model_refuses_a_gate_file_that_is_not_an_object(spark_submit, tmp_path):
    gate = tmp_path / "gate.json"
    gate.write_text("[0.8, 0.9]\n")
    proc = spark_submit("fit_model.py", "--gate-file", str(gate), "--input", str(tmp_path / "x"),
                        "--model-dir", str(tmp_path / "m"), "--no-tracking")
    assert_refused(proc, "gate.json", "JSON list")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("app", ["stream_csv_to_kafka.py", "classify_stream.py"])
def test_a_streaming_app_without_the_kafka_connector_says_so_before_any_work(spark_submit, raw_csv, tmp_path, app):
    # run_spark_app passes no --jars: Spark's own jars hold no Kafka connector
    quarantine = earlier_output(tmp_path / "quarantine")
    before = tree_digest(quarantine)
    args = {"stream_csv_to_kafka.py": ["--input", str(raw_csv), "--quarantine", str(quarantine)],
            "classify_stream.py": ["--model", str(tmp_path / "no-model"), "--checkpoint", str(tmp_path / "ck")]}[app]
    proc = spark_submit(app, *args, "--bootstrap-servers", "127.0.0.1:1")
    assert_refused(proc, "Kafka connector is not on the classpath", "--jars")
    assert tree_digest(quarantine) == before and not (tmp_path / "ck").exists()


def test_the_replay_refuses_a_quarantine_inside_its_input_folder(spark_submit, spark_kafka_jars, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + "\n")
    before = tree_digest(folder)
    proc = spark_submit("stream_csv_to_kafka.py", "--input", str(folder), "--quarantine", str(folder / "q"),
                        "--bootstrap-servers", "127.0.0.1:1",
                        extra_submit_args=["--jars", ",".join(spark_kafka_jars)])
    assert_refused(proc, "--quarantine", "inside --input")
    assert tree_digest(folder) == before
