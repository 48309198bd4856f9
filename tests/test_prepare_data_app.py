"""The generator and preparation apps run through the real spark-submit.

A small generated file gets every kind of bad row appended; the test checks that
rows in = rows out + rows quarantined, each bad row's reason, the month
partitions, stable ids across file shapes, and that a re-run overwrites.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

GOOD_ROWS = 1_500
BAD_LINES = {
    "0,'C1','4','M','28007'": "expected 10 fields, found 5",
    "x,'C1','4','M','28007','M1','28007','es_food',1.00,0": "step is not an integer",
    "-1,'C1','4','M','28007','M1','28007','es_food',1.00,0": "step is negative",
    "3,'C1','4','M','28007','M1','28007','es_food',abc,0": "amount is not numeric",
    "3,'C1','4','M','28007','M1','28007','es_food',-2.00,0": "amount is negative",
    "3,'C1','4','M','28007','M1','28007','es_food',1.00,5": "fraud is not 0 or 1",
    "3,'X1','4','M','28007','M1','28007','es_food',1.00,0": "customer id is not C followed by digits",
    "3,'C1','4','M','28007','Z1','28007','es_food',1.00,0": "merchant id is not M followed by digits",
    "3,'C1','9','M','28007','M1','28007','es_food',1.00,0": "age is not one of 0-6 or U",
    "3,'C1','4','Q','28007','M1','28007','es_food',1.00,0": "gender is not one of F, M, E, U",
    "3,'C1','4','M','28007','M1','28007','es_casino',1.00,0": "category is unknown",
    "": "empty line",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory, spark_submit) -> Path:
    out = tmp_path_factory.mktemp("gen") / "transactions.csv"
    proc = spark_submit("generate_transactions.py", "--rows", str(GOOD_ROWS), "--seed", "7", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def mixed_file(generated, tmp_path_factory) -> Path:
    mixed = tmp_path_factory.mktemp("mixed") / "mixed.csv"
    body = generated.read_bytes()
    assert body.endswith(b"\r\n")
    mixed.write_bytes(body + b"".join(line.encode() + b"\r\n" for line in BAD_LINES))
    return mixed


@pytest.fixture(scope="module")
def prepared(mixed_file, tmp_path_factory, spark_submit):
    out = tmp_path_factory.mktemp("prepared")
    args = ["--input", str(mixed_file), "--output", str(out / "tx"), "--quarantine", str(out / "q")]
    proc = spark_submit("prepare_data.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, args, proc


def test_counts_add_up_and_are_logged(prepared):
    out, _, proc = prepared
    metrics = json.loads((out / "tx" / "_metrics.json").read_text())
    assert metrics["rows_in"] == GOOD_ROWS + len(BAD_LINES)
    assert metrics["rows_out"] == GOOD_ROWS
    assert metrics["rows_quarantined"] == len(BAD_LINES)
    assert f"rows_in={GOOD_ROWS + len(BAD_LINES)} rows_out={GOOD_ROWS} rows_quarantined={len(BAD_LINES)}" in proc.stdout + proc.stderr


def test_every_bad_row_is_quarantined_whole_with_its_reason(prepared, spark):
    out, _, _ = prepared
    quarantined = {row["raw_line"]: row["reason"] for row in spark.read.json(str(out / "q")).collect()}
    assert quarantined == BAD_LINES


def test_output_is_typed_parquet_partitioned_by_month(prepared, spark):
    out, _, _ = prepared
    months = sorted(p.name for p in (out / "tx").iterdir() if p.name.startswith("event_month="))
    assert months[0] == "event_month=2024-01" and len(months) >= 6
    df = spark.read.parquet(str(out / "tx"))
    assert df.count() == GOOD_ROWS
    assert df.select("transaction_id").distinct().count() == GOOD_ROWS
    assert dict(df.dtypes)["amount"] == "double" and dict(df.dtypes)["step"] == "int"
    one_month = spark.read.parquet(str(out / "tx")).where("event_month = '2024-02'")
    assert one_month.where("month(event_time) != 2").count() == 0


def test_rerun_overwrites_instead_of_appending(prepared, spark, spark_submit):
    out, args, _ = prepared
    proc = spark_submit("prepare_data.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert spark.read.parquet(str(out / "tx")).count() == GOOD_ROWS
    assert spark.read.json(str(out / "q")).count() == len(BAD_LINES)


def test_unquoted_lf_copy_gets_the_same_transaction_ids(generated, prepared, tmp_path, spark, spark_submit):
    out, _, _ = prepared
    plain = tmp_path / "plain.csv"
    plain.write_bytes(generated.read_bytes().replace(b"'", b"").replace(b"\r\n", b"\n"))
    proc = spark_submit("prepare_data.py", "--input", str(plain), "--output", str(tmp_path / "tx"),
                        "--quarantine", str(tmp_path / "q"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = lambda p: {r["transaction_id"] for r in spark.read.parquet(str(p)).select("transaction_id").collect()}  # noqa: E731
    assert ids(tmp_path / "tx") == ids(out / "tx")


def test_with_id_variant_is_accepted(tmp_path, spark, spark_submit):
    csv = tmp_path / "with_id.csv"
    proc = spark_submit("generate_transactions.py", "--rows", "300", "--variant", "with-id", "--output", str(csv))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = spark_submit("prepare_data.py", "--input", str(csv), "--output", str(tmp_path / "tx"),
                        "--quarantine", str(tmp_path / "q"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "tx" / "_metrics.json").read_text())
    assert (metrics["rows_in"], metrics["rows_out"], metrics["rows_quarantined"]) == (300, 300, 0)


def test_a_file_that_is_not_banksim_is_a_clear_error_not_a_stack_trace(tmp_path, spark_submit):
    csv = tmp_path / "other.csv"
    csv.write_text("name,price\nfoo,1\n")
    proc = spark_submit("prepare_data.py", "--input", str(csv), "--output", str(tmp_path / "tx"),
                        "--quarantine", str(tmp_path / "q"))
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert "field 1 of 2 is not a BankSim column" in output
    assert "name,price" not in output and "foo" not in output
    assert "Traceback" not in output


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs folder: a real file system that fills up (the harness is root, as CI is)."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the full-disk test: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_one_line_exit_1_and_keeps_the_earlier_output(mixed_file, small_disk, tmp_path, spark_submit):
    """The output's file system fills up part-way: one line naming the output and the device error, exit 1,
    no stack trace, the earlier prepared data and quarantine byte for byte, no staging folder left."""
    from fraudlab.data import generator

    args = ["--output", str(small_disk / "tx"), "--quarantine", str(small_disk / "q")]
    first = spark_submit("prepare_data.py", "--input", str(mixed_file), *args)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p.relative_to(small_disk): p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    bigger = tmp_path / "bigger.csv"
    generator.write_sample(bigger, rows=60_000, seed=5)

    done = spark_submit("prepare_data.py", "--input", str(bigger), *args)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR prepare_data:" in line]
    assert len(errors) == 1, output[-3000:]
    assert "writing the output failed: java.io.IOException: No space left on device" in errors[0], errors
    assert f"the earlier {small_disk / 'q'} and {small_disk / 'tx'} kept as before" in errors[0], errors
    assert "Traceback" not in output and "Py4JJavaError" not in output
    after = {p.relative_to(small_disk): p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    assert after == before
