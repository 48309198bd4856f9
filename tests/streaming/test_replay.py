"""The replay's event order and pace, and the latency percentiles of the progress figures."""

from __future__ import annotations


import pytest
from pyspark.sql import functions as F

from fraudlab.schemas import PREPARED_SCHEMA
from fraudlab.streaming import progress, replay
from tests.streaming.rows import prepared_rows

pytestmark = pytest.mark.spark


# --------------------------------------------------------------------------- replay pace and figures


def test_replay_order_is_by_step_and_limit_takes_the_first_rows(spark):
    df = spark.createDataFrame(prepared_rows([("b", 2, "C1", "M1", "es_food", 1.0, 0), ("a", 2, "C1", "M1", "es_food", 2.0, 0),
                          ("c", 0, "C2", "M1", "es_food", 3.0, 0)]), PREPARED_SCHEMA)
    assert [(r["seq"], r["transaction_id"]) for r in replay.replay_order(df).orderBy("seq").collect()] == [
        (1, "c"), (2, "a"), (3, "b")]
    assert [r["transaction_id"] for r in replay.replay_order(df, limit=2).collect()] == ["c", "a"]


def test_rows_per_second_pace_sends_a_tick_worth_per_chunk(spark):
    pace = replay.ReplayPace(rows_per_second=4, tick_seconds=0.5)
    df = spark.range(1, 8).select(F.col("id").alias("seq"), F.lit(0).alias("step"))
    assert [r["c"] for r in df.select(pace.chunk().alias("c")).collect()] == [0, 0, 1, 1, 2, 2, 3]
    assert [pace.due_seconds(i) for i in range(4)] == [0.0, 0.5, 1.0, 1.5]


def test_step_by_step_pace_compresses_a_day(spark):
    pace = replay.ReplayPace(step_by_step=True, speedup=86_400 / 2)
    assert pace.due_seconds(13, first_chunk=10) == 6.0
    df = spark.createDataFrame([(1, 10), (2, 13)], "seq long, step int")
    assert [r["c"] for r in df.select(pace.chunk().alias("c")).collect()] == [10, 13]


def test_unpaced_replay_is_one_chunk_due_at_once():
    pace = replay.ReplayPace()
    assert (pace.paced, pace.due_seconds(0)) == (False, 0.0)


def test_pace_rejects_both_modes_and_bad_rates():
    with pytest.raises(ValueError, match="not both"):
        replay.ReplayPace(rows_per_second=10, step_by_step=True)
    with pytest.raises(ValueError):
        replay.ReplayPace(rows_per_second=0)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (progress.percentile(values, 50), progress.percentile(values, 99), progress.percentile(values, 100)) == (
        50.0, 99.0, 100.0)
    assert progress.percentile([], 50) is None
