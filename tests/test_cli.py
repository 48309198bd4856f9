"""The apps' flag types and their one-line refusals (fraudlab.cli), without Spark."""

from __future__ import annotations

import pytest

from fraudlab import cli


def parse(*args: str, **flags):
    parser = cli.parser("An app.\n\nMore text.", "some_app")
    for name, kind in flags.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind)
    return parser.parse_args(list(args))


def refusal(capsys, *args: str, **flags) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(*args, **flags)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_bad_value_is_one_line_naming_the_app_and_the_flag(capsys):
    line = refusal(capsys, "--rows", "-5", rows=cli.int_at_least(1))
    assert line.startswith("some_app: argument --rows: '-5' is not an integer >= 1")


@pytest.mark.parametrize("text", ["nan", "inf", "-0.1", "1.01", "x"])
def test_a_probability_lies_in_0_1_and_is_finite(capsys, text):
    assert "--p" in refusal(capsys, "--p", text, p=cli.probability)


def test_good_values_come_back_typed():
    args = parse("--n", "3", "--p", "0.25", "--share", "0.5", "--port", "9042",
                 n=cli.int_at_least(0), p=cli.probability, share=cli.number_between(0, 1, True, True), port=cli.port)
    assert (args.n, args.p, args.share, args.port) == (3, 0.25, 0.5, 9042)


@pytest.mark.parametrize("text", ["0", "1"])
def test_open_ends_are_refused(capsys, text):
    refusal(capsys, "--share", text, share=cli.number_between(0, 1, low_open=True, high_open=True))


def test_zero_rows_per_second_is_no_pace_and_a_negative_rate_is_refused(capsys):
    assert parse("--rate", "0", rate=cli.rate).rate is None
    assert parse("--rate", "250", rate=cli.rate).rate == 250.0
    assert "'-5' is not a number >= 0" in refusal(capsys, "--rate", "-5", rate=cli.rate)


@pytest.mark.parametrize("text", ["2024-02-30", "2024-1-1", "20240101", "yesterday"])
def test_dates_are_calendar_dates_written_yyyy_mm_dd(capsys, text):
    refusal(capsys, "--start-date", text, start_date=cli.iso_date)


def test_a_month_is_yyyy_mm(capsys):
    assert parse("--month", "2024-06", month=cli.month).month == "2024-06"
    refusal(capsys, "--month", "2024-13", month=cli.month)


@pytest.mark.parametrize("text", ["2 seconds", "500 milliseconds", "1 minute 30 seconds", "interval 1 second"])
def test_spark_intervals_are_accepted(text):
    assert parse("--every", text, every=cli.interval).every == text


@pytest.mark.parametrize("text", ["soon", "0 seconds", "2", "seconds", "-1 second"])
def test_other_intervals_are_refused(capsys, text):
    refusal(capsys, "--every", text, every=cli.interval)


def test_a_port_lies_in_1_65535(capsys):
    refusal(capsys, "--port", "70000", port=cli.port)
    refusal(capsys, "--port", "0", port=cli.port)
