"""The customer history kept between micro-batches (equal to the batch features, replay-safe) and stream
scoring equal to batch scoring, on static DataFrames: no Kafka, no Cassandra."""

from __future__ import annotations

import random

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from fraudlab import features, schemas, scoring
from fraudlab.train import pipeline as train_pipeline
from fraudlab.schemas import PREPARED_SCHEMA
from fraudlab.streaming import alerts, codec, history
from tests.streaming.rows import CONFIG, GOOD_MESSAGE, START, WINDOW, as_kafka, kafka_rows, prepared_rows

pytestmark = pytest.mark.spark


# --------------------------------------------------------------------------- customer history

# Four customers over steps 0..11 with a few planted patterns: C3 repeats a claim 3 steps later
# (across the split of the history tests), C4 repeats one 9 steps later (outside the window).
HISTORY_DATA = (
    [(f"r{c}{s:02d}", s, f"C{c}", "M85975013", "es_food", round(8 + 3 * c + 1.7 * s, 2), 0)
     for c in range(1, 4) for s in range(12) if (c + s) % 4]
    + [("d1", 4, "C3", "M1053599405", "es_health", 77.70, 0), ("d2", 7, "C3", "M1053599405", "es_health", 77.70, 0),
       ("o1", 1, "C4", "M1053599405", "es_health", 66.60, 0), ("o2", 10, "C4", "M1053599405", "es_health", 66.60, 0),
       ("s1", 6, "C1", "M1053599405", "es_health", 95.00, 0), ("s2", 6, "C1", "M85975013", "es_food", 20.00, 0)]
)  # fmt: skip


def prepared(spark, data=HISTORY_DATA):
    return spark.createDataFrame(prepared_rows(data), PREPARED_SCHEMA)


def parsed_batch(spark, data):
    """Rows as parse_messages returns them (the Kafka round trip included)."""
    parsed, dead = codec.parse_messages(as_kafka(spark, codec.to_kafka_messages(prepared(spark, data))))
    assert dead.count() == 0
    return parsed


def what_cassandra_returns(spark, stored_data, requests):
    """The rows sink.fetch_history yields for ``requests`` from a table holding ``stored_data``."""
    out = []
    for req in requests:
        mine = [r for r in stored_data if r[2] == req["customer"]]
        older = [r for r in mine if r[1] < req["context_from_step"]]
        if older:
            out.append((req["customer"], req["context_from_step"] - 1, None, None, None, len(older),
                        float(sum(r[5] for r in older))))
        out += [(req["customer"], r[1], r[0], r[3], float(r[5]), 1, float(r[5])) for r in mine
                if req["context_from_step"] <= r[1] <= req["context_to_step"]]
    return spark.createDataFrame(out, schemas.STORED_HISTORY_SCHEMA)


def stream_history(spark, stored_data, batch_data):
    batch = parsed_batch(spark, batch_data)
    stored = what_cassandra_returns(spark, stored_data,
                                    history.history_requests(batch.select("customer", "step").collect(), WINDOW))
    return history.add_stream_history(batch, stored, WINDOW)


HISTORY_FIELDS = ["transaction_id", *features.HISTORY_COLUMNS, "duplicate_claim", "duplicate_of"]


def batch_history(spark, data=HISTORY_DATA):
    return scoring.add_duplicate_claims(features.add_customer_history(prepared(spark, data)), WINDOW)


def test_history_of_a_first_batch_equals_the_batch_features(spark):
    assertDataFrameEqual(stream_history(spark, [], HISTORY_DATA).select(*HISTORY_FIELDS),
                         batch_history(spark).select(*HISTORY_FIELDS), rtol=1e-9)


@pytest.mark.parametrize("split_step", [3, 6, 9])
def test_history_carried_over_from_earlier_batches_equals_the_batch_features(spark, split_step):
    earlier = [r for r in HISTORY_DATA if r[1] < split_step]
    later = [r for r in HISTORY_DATA if r[1] >= split_step]
    expected = batch_history(spark).where(F.col("step") >= split_step).select(*HISTORY_FIELDS)
    assertDataFrameEqual(stream_history(spark, earlier, later).select(*HISTORY_FIELDS), expected, rtol=1e-9)


def test_duplicate_of_a_claim_in_an_earlier_batch_is_found(spark):
    out = stream_history(spark, [r for r in HISTORY_DATA if r[1] < 6], [r for r in HISTORY_DATA if r[1] >= 6])
    rows = {r["transaction_id"]: r for r in out.collect()}
    assert (rows["d2"]["duplicate_claim"], rows["d2"]["duplicate_of"]) == (True, "d1")
    assert rows["o2"]["duplicate_claim"] is False


def test_replayed_batch_already_in_the_history_counts_nothing_twice(spark):
    earlier = [r for r in HISTORY_DATA if r[1] < 6]
    later = [r for r in HISTORY_DATA if r[1] >= 6]
    first = stream_history(spark, earlier, later)
    replayed = stream_history(spark, earlier + later, later)  # the batch's rows were written before it failed
    assertDataFrameEqual(replayed.select(*HISTORY_FIELDS), first.select(*HISTORY_FIELDS), rtol=1e-9)


def test_a_transaction_sent_twice_in_a_batch_is_scored_once(spark):
    parsed, _ = codec.parse_messages(kafka_rows(spark, [GOOD_MESSAGE, b"x", GOOD_MESSAGE]))
    stored = spark.createDataFrame([], schemas.STORED_HISTORY_SCHEMA)
    rows = history.add_stream_history(parsed, stored, WINDOW).collect()
    assert [(r["transaction_id"], r["kafka_offset"], r["customer_prior_count"]) for r in rows] == [("t1", 0, 0.0)]


def test_rows_stored_on_later_steps_are_not_history(spark):
    later_steps = [r for r in HISTORY_DATA if r[1] >= 6]
    out = stream_history(spark, later_steps, [r for r in HISTORY_DATA if r[1] < 6])  # arrived late
    expected = batch_history(spark).where(F.col("step") < 6).select(*HISTORY_FIELDS)
    assertDataFrameEqual(out.select(*HISTORY_FIELDS), expected, rtol=1e-9)


def test_history_requests_reach_back_one_duplicate_window(spark):
    batch = [r for r in HISTORY_DATA if r[1] >= 9]
    requests = history.history_requests(parsed_batch(spark, batch).select("customer", "step").collect(), WINDOW)
    steps = {}
    for row in batch:
        steps.setdefault(row[2], []).append(row[1])
    assert {r["customer"]: (r["context_from_step"], r["context_to_step"]) for r in requests} == {
        customer: (min(s) - WINDOW, max(s)) for customer, s in steps.items()}




# --------------------------------------------------------------------------- scoring


def training_data(seed=5):
    """Legitimate food and health payments; frauds are large payments at M480139044."""
    rng = random.Random(seed)
    data = []
    for c in range(10):
        for step in range(10):
            data.append((f"t{c}_{step}", step, f"C9{c}", "M85975013", "es_food", round(rng.uniform(5, 60), 2), 0))
            if rng.random() < 0.15:
                data.append((f"f{c}_{step}", step, f"C9{c}", "M480139044", "es_health",
                             round(rng.uniform(400, 900), 2), 1))
    return data


@pytest.fixture(scope="module")
def fitted(spark):
    from pyspark.ml.classification import LogisticRegression

    train = prepared(spark, training_data())
    pipeline = train_pipeline.build_pipeline(LogisticRegression(maxIter=20, regParam=0.01), features.category_stats(train))
    return pipeline.fit(train_pipeline.add_class_weight(features.model_input(train)))


SCORE_DATA = HISTORY_DATA + [("x1", 8, "C2", "M480139044", "es_health", 850.0, 1),
                             ("x2", 11, "C1", "M85975013", "es_food", 400.0, 0)]


@pytest.mark.parametrize("split_step", [0, 7])
def test_stream_scores_equal_batch_scores(spark, fitted, split_step):
    earlier = [r for r in SCORE_DATA if r[1] < split_step]
    later = [r for r in SCORE_DATA if r[1] >= split_step]
    stream = alerts.score_messages(stream_history(spark, earlier, later), fitted, CONFIG, 0.5, "v1")
    batch = scoring.score_claims(fitted, prepared(spark, SCORE_DATA), CONFIG, 0.5, "v1")
    assertDataFrameEqual(stream.select(*schemas.SCORED_COLUMNS),
                         batch.where(F.col("step") >= split_step), rtol=1e-9)
    # x2 is a spike only against C1's earlier rows, most of which came from the stored history.
    assert "customer_amount_spike" in {r["transaction_id"]: r["reasons"] for r in stream.collect()}["x2"]


def test_stream_scored_rows_keep_the_kafka_timestamp(spark, fitted):
    stream = alerts.score_messages(stream_history(spark, [], SCORE_DATA[:3]), fitted, CONFIG, 0.5, "v1")
    assert stream.columns == schemas.STREAM_SCORED_COLUMNS
    assert all(r["kafka_timestamp"] == START for r in stream.collect())
