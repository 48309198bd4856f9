"""Parsing and validation rules, one behaviour per test, on tiny inline lines."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from fraudlab.data import banksim
from fraudlab.data.parsing import (
    HeaderError,
    parse_header,
    parse_lines,
    split_fields,
    validate,
)

pytestmark = pytest.mark.spark

HEADER = list(banksim.BANKSIM_COLUMNS)
GOOD = "0,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0"


def lines_df(spark, *lines):
    rows = [("file:///in.csv", i + 2, line) for i, line in enumerate(lines)]
    return spark.createDataFrame(rows, "source_file string, line_number long, raw_line string")


def reasons(spark, *lines, columns=HEADER):
    validated = validate(split_fields(lines_df(spark, *lines), columns))
    return [row["reason"] for row in validated.orderBy("line_number").collect()]


# --- headers ---------------------------------------------------------------

def test_header_of_the_public_file_is_recognised():
    assert parse_header("step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\r\n") == HEADER


def test_header_of_the_with_id_variant_keeps_id_and_date():
    assert parse_header("id,date," + ",".join(HEADER))[:3] == ["id", "date", "step"]


def test_header_with_a_pandas_index_column_marks_it_ignorable():
    assert parse_header("," + ",".join(HEADER))[0] == "_index"
    assert parse_header("Unnamed: 0," + ",".join(HEADER))[0] == "_index"


def test_quoted_header_is_recognised():
    assert parse_header(",".join(f"'{c}'" for c in HEADER)) == HEADER


def test_header_missing_a_column_is_a_clear_error():
    with pytest.raises(HeaderError, match="lacks the BankSim column"):
        parse_header("step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount")


def test_header_with_an_unknown_column_is_a_clear_error():
    with pytest.raises(HeaderError, match="its field 3 of 3 is not a BankSim column"):
        parse_header("step,customer,price")


def test_a_header_error_never_echoes_the_line():
    data_line = "1,'C1093826151','4','M','28007','M348934600','28007','es_transportation',39.68,0"
    with pytest.raises(HeaderError) as refused:
        parse_header(data_line)
    assert "C1093826151" not in str(refused.value) and "39.68" not in str(refused.value)
    with pytest.raises(HeaderError, match="repeats the column\\(s\\) amount"):
        parse_header("step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud,amount")


# --- good rows in every shape ------------------------------------------------

def test_quoted_row_is_valid_and_typed(spark):
    validated = validate(split_fields(lines_df(spark, GOOD), HEADER)).collect()[0]
    assert validated["reason"] is None
    assert (validated["step"], validated["customer"], validated["amount"], validated["fraud"]) == (
        0, "C1093826151", 4.55, 0)
    assert validated["category"] == "es_transportation"


def test_unquoted_row_parses_the_same_as_quoted(spark):
    unquoted = GOOD.replace("'", "")
    good, _ = parse_lines(lines_df(spark, GOOD), HEADER)
    same, _ = parse_lines(lines_df(spark, unquoted), HEADER)
    assert good.drop("transaction_id").collect() == same.drop("transaction_id").collect()
    assert good.collect()[0]["transaction_id"] == same.collect()[0]["transaction_id"]


def test_trailing_carriage_return_is_ignored(spark):
    assert reasons(spark, GOOD + "\r") == [None]


def test_event_time_is_start_date_plus_step_days(spark):
    row = validate(split_fields(lines_df(spark, GOOD.replace("0,'C1", "40,'C1", 1)), HEADER),
                   start_date="2024-01-01").collect()[0]
    assert str(row["event_time"]) == "2024-02-10 00:00:00"
    assert row["event_month"] == "2024-02"


def test_with_id_variant_takes_event_time_from_its_date(spark):
    columns = ["id", "date", *HEADER]
    row = validate(split_fields(lines_df(spark, "7,2024-03-05 00:00:00," + GOOD), columns)).collect()[0]
    assert row["reason"] is None
    assert str(row["event_time"]) == "2024-03-05 00:00:00"


def test_pandas_index_column_is_dropped(spark):
    row = validate(split_fields(lines_df(spark, "12," + GOOD.replace("'", "")), ["_index", *HEADER])).collect()[0]
    assert row["reason"] is None and row["customer"] == "C1093826151"


def test_zero_amount_is_valid(spark):
    assert reasons(spark, GOOD.replace(",4.55,", ",0.00,")) == [None]


def test_header_lines_inside_the_input_are_not_rows(spark):
    header = ",".join(HEADER)
    assert split_fields(lines_df(spark, header, GOOD), HEADER).count() == 1


# --- each kind of bad row ---------------------------------------------------

@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0,'C1','4','M','28007'", "expected 10 fields, found 5"),
        (GOOD + ",extra", "expected 10 fields, found 11"),
        ("", "empty line"),
        (GOOD.replace("0,'C1", "x,'C1", 1), "step is not an integer"),
        (GOOD.replace("0,'C1", "1.5,'C1", 1), "step is not an integer"),
        (GOOD.replace("0,'C1", "-3,'C1", 1), "step is negative"),
        (GOOD.replace("0,'C1", ",'C1", 1), "step is missing"),
        (GOOD.replace(",4.55,", ",abc,"), "amount is not numeric"),
        (GOOD.replace(",4.55,", ",,"), "amount is missing"),
        (GOOD.replace(",4.55,", ",-4.55,"), "amount is negative"),
        (GOOD.replace(",4.55,", ",NaN,"), "amount is not a finite number"),
        (GOOD.replace(",4.55,", ",Infinity,"), "amount is not a finite number"),
        (GOOD[:-1] + "2", "fraud is not 0 or 1"),
        (GOOD[:-1] + "yes", "fraud is not 0 or 1"),
        (GOOD.replace("'C1093826151'", "'X1093826151'"), "customer id is not C followed by digits"),
        (GOOD.replace("'M348934600'", "'348934600'"), "merchant id is not M followed by digits"),
        (GOOD.replace("'4','M'", "'9','M'"), "age is not one of 0-6 or U"),
        (GOOD.replace("'4','M'", "'4','X'"), "gender is not one of F, M, E, U"),
        (GOOD.replace("es_transportation", "es_casino"), "category is unknown"),
        (GOOD.replace("'28007','M348", "'','M348"), "zipcodeOri is not digits"),
    ],
    ids=lambda value: value if len(value) < 40 else None,
)
def test_each_bad_row_gets_its_reason(spark, line, expected):
    assert reasons(spark, line) == [expected]


def test_several_broken_fields_are_all_named(spark):
    line = GOOD.replace("0,'C1", "-1,'C1", 1).replace("es_transportation", "es_casino")[:-1] + "7"
    assert reasons(spark, line) == ["step is negative; fraud is not 0 or 1; category is unknown"]


def test_with_id_variant_rejects_a_bad_date_and_id(spark):
    columns = ["id", "date", *HEADER]
    assert reasons(spark, "x,not-a-date," + GOOD, columns=columns) == [
        "id is not an integer; date is not a timestamp"]


# --- accounting and ids -----------------------------------------------------

def test_rows_in_equal_rows_out_plus_rows_quarantined(spark):
    bad = [GOOD.replace(",4.55,", ",abc,"), "", "1,2,3"]
    good_lines = [GOOD.replace(",4.55,", f",{i}.00,") for i in range(5)]
    prepared, quarantine = parse_lines(lines_df(spark, *good_lines, *bad), HEADER)
    assert prepared.count() == 5
    assert quarantine.count() == 3
    assert quarantine.where(F.col("raw_line").isNull() | F.col("reason").isNull()).count() == 0


def test_quarantine_keeps_the_raw_line_and_its_position(spark):
    line = GOOD.replace(",4.55,", ",abc,")
    _, quarantine = parse_lines(lines_df(spark, GOOD, line), HEADER)
    row = quarantine.collect()[0]
    assert (row["raw_line"], row["line_number"], row["source_file"]) == (line, 3, "file:///in.csv")


def test_identical_lines_are_two_transactions_with_two_ids(spark):
    prepared, _ = parse_lines(lines_df(spark, GOOD, GOOD), HEADER)
    ids = [row["transaction_id"] for row in prepared.collect()]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_transaction_id_is_stable_across_runs_and_positions(spark):
    other = GOOD.replace(",4.55,", ",9.99,")
    first, _ = parse_lines(lines_df(spark, GOOD, other), HEADER)
    second, _ = parse_lines(lines_df(spark, other, GOOD), HEADER)
    by_amount = lambda df: {r["amount"]: r["transaction_id"] for r in df.collect()}  # noqa: E731
    assert by_amount(first) == by_amount(second)
    assert all(len(tid) == 32 for tid in by_amount(first).values())
