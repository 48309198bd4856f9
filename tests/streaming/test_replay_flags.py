"""stream_csv_to_kafka.py's pace flags, as the fraud_streaming DAG passes them: parsed, no Spark session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "spark-apps" / "stream_csv_to_kafka.py"


@pytest.fixture(scope="module")
def app():
    spec = importlib.util.spec_from_file_location("stream_csv_to_kafka", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_per_second_zero_is_as_fast_as_possible(app):
    args = app.parse_args(["--rows-per-second", "0"])
    assert args.rows_per_second is None and not args.pace.paced
    assert app.parse_args([]).pace == args.pace, "the same as no flag"


def test_rows_per_second_paces_the_replay(app):
    pace = app.parse_args(["--rows-per-second", "250"]).pace
    assert pace.paced and pace.rows_per_chunk == 250


def test_a_negative_rate_is_refused(app, capsys):
    with pytest.raises(SystemExit) as exit_:
        app.parse_args(["--rows-per-second", "-5"])
    assert exit_.value.code == 2 and "rows_per_second must be > 0" in capsys.readouterr().err
