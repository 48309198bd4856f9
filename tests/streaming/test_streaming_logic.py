"""The stream's logic on static DataFrames built from Kafka-shaped rows: no Kafka, no Cassandra.

Messages in and out, each kind of malformed message, alert selection at the
threshold, the Cassandra row mapping, the customer history kept between
micro-batches (equal to the batch features, replay-safe), stream scoring equal
to batch scoring, the replay pace.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from fraudlab import features, schemas, scoring
from fraudlab.train import pipeline as train_pipeline
from fraudlab.config import DetectionConfig
from fraudlab.schemas import PREPARED_COLUMNS, PREPARED_SCHEMA
from fraudlab.streaming import alerts, codec, history, progress, replay, sink

pytestmark = pytest.mark.spark

KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
START = dt.datetime(2024, 1, 1)
CONFIG = DetectionConfig()
WINDOW = CONFIG.duplicate_window_steps
GOOD_MESSAGE = {
    "transaction_id": "t1", "step": 3, "customer": "C1093826151", "age": "4", "gender": "M",
    "zipcode_ori": "28007", "merchant": "M348934600", "zip_merchant": "28007", "category": "es_transportation",
    "amount": 4.55, "fraud": 0, "event_time": "2024-01-04T00:00:00.000Z",
}  # fmt: skip


def prepared_rows(data):
    """(id, step, customer, merchant, category, amount, fraud) -> prepared rows."""
    rows = []
    for tid, step, customer, merchant, category, amount, fraud in data:
        when = START + dt.timedelta(days=step)
        rows.append((tid, step, customer, "2", "F", "28007", merchant, "28007", category, float(amount), fraud,
                     when, when.strftime("%Y-%m")))
    return rows


def kafka_rows(spark, values, keys=None, topic="transactions", partition=0):
    """Kafka-shaped rows: ``values`` are dicts (sent as JSON), str or bytes (sent as they are) or None."""
    rows = []
    for offset, value in enumerate(values):
        raw = json.dumps(value).encode() if isinstance(value, dict) else (
            value.encode() if isinstance(value, str) else value)
        key = keys[offset] if keys else (value.get("transaction_id") if isinstance(value, dict) else None)
        rows.append((key.encode() if isinstance(key, str) else key, raw, topic, partition, offset,
                     START + dt.timedelta(seconds=offset)))
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def as_kafka(spark, messages_df, partition=0):
    """The output of to_kafka_messages as the Kafka source would read it back."""
    rows = [(r["key"].encode(), r["value"].encode(), "transactions", partition, i, START)
            for i, r in enumerate(messages_df.collect())]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def only_dead_letter(spark, value, key=b"k1"):
    parsed, dead = codec.parse_messages(kafka_rows(spark, [value], keys=[key], partition=1))
    assert parsed.count() == 0
    rows = dead.collect()
    assert len(rows) == 1
    return rows[0]


# --------------------------------------------------------------------------- messages


def test_messages_parse_back_to_the_prepared_rows(spark):
    prepared = spark.createDataFrame(prepared_rows([("a", 0, "C1", "M1", "es_food", 12.5, 0),
                                                    ("b", 4, "C2", "M2", "es_health", 99.99, 1)]), PREPARED_SCHEMA)
    parsed, dead = codec.parse_messages(as_kafka(spark, codec.to_kafka_messages(prepared)))
    assertDataFrameEqual(parsed.select(*PREPARED_COLUMNS), prepared)
    assert dead.count() == 0


def test_message_key_is_the_transaction_id_and_value_the_message_schema(spark):
    prepared = spark.createDataFrame(prepared_rows([("a", 0, "C1", "M1", "es_food", 12.5, 0)]), PREPARED_SCHEMA)
    message = codec.to_kafka_messages(prepared).collect()[0]
    assert message["key"] == "a"
    assert set(json.loads(message["value"])) == set(codec.MESSAGE_FIELDS)
    assert json.loads(message["value"])["event_time"] == "2024-01-01T00:00:00.000Z"


def test_parsed_rows_keep_their_kafka_coordinates(spark):
    parsed, _ = codec.parse_messages(kafka_rows(spark, [GOOD_MESSAGE], partition=1))
    row = parsed.collect()[0]
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("transactions", 1, 0)
    assert (row["transaction_id"], row["step"], row["amount"], row["event_time"]) == (
        "t1", 3, 4.55, dt.datetime(2024, 1, 4))


def test_numbers_sent_as_strings_are_judged_like_csv_text(spark):
    parsed, dead = codec.parse_messages(kafka_rows(spark, [{**GOOD_MESSAGE, "amount": "4.55", "step": "3"}]))
    assert dead.count() == 0
    assert parsed.collect()[0]["amount"] == 4.55


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(b"this is not json", "not a JSON object", id="not-json"),
        pytest.param(b'{"transaction_id": "t1", "step": 3', "not a JSON object", id="truncated-json"),
        pytest.param(b"[1, 2]", "not a JSON object", id="json-array"),
        pytest.param(b"\xff\xfe\x00", "not a JSON object", id="not-utf8"),
        pytest.param(b"", "empty message", id="empty-value"),
        pytest.param(None, "empty message", id="null-value"),
        pytest.param({k: v for k, v in GOOD_MESSAGE.items() if k != "amount"}, "missing field(s): amount",
                     id="missing-field"),
        pytest.param({**GOOD_MESSAGE, "merchant": None, "fraud": None}, "missing field(s): merchant, fraud",
                     id="null-fields"),
        pytest.param({**GOOD_MESSAGE, "transaction_id": "  "}, "missing field(s): transaction_id", id="blank-id"),
        pytest.param({**GOOD_MESSAGE, "amount": "lots"}, "amount is not numeric", id="wrong-type-amount"),
        pytest.param({**GOOD_MESSAGE, "step": 2.5}, "step is not an integer", id="wrong-type-step"),
        pytest.param({**GOOD_MESSAGE, "customer": 1093826151}, "customer id is not C followed by digits",
                     id="wrong-type-customer"),
        pytest.param({**GOOD_MESSAGE, "category": "es_casino"}, "category is unknown", id="bad-category"),
        pytest.param({**GOOD_MESSAGE, "amount": -2.0}, "amount is negative", id="negative-amount"),
        pytest.param({**GOOD_MESSAGE, "fraud": 2}, "fraud is not 0 or 1", id="bad-label"),
        pytest.param({**GOOD_MESSAGE, "zipcode_ori": "28OO7"}, "zipcode_ori is not digits", id="bad-zipcode"),
        pytest.param({**GOOD_MESSAGE, "event_time": "yesterday"}, "event_time is not a timestamp",
                     id="bad-event-time"),
    ],
)
def test_malformed_message_becomes_a_dead_letter_with_reason_and_original_bytes(spark, value, reason):
    row = only_dead_letter(spark, value)
    assert reason in row["reason"]
    original = json.dumps(value).encode() if isinstance(value, dict) else value
    assert row["value"] == (bytearray(original) if original is not None else None)
    assert row["key"] == bytearray(b"k1")
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("transactions", 1, 0)


def test_every_failed_rule_is_in_the_reason(spark):
    row = only_dead_letter(spark, {**GOOD_MESSAGE, "amount": -1.0, "category": "es_casino"})
    assert row["reason"] == "amount is negative; category is unknown"


def test_good_and_bad_messages_of_one_batch_are_separated(spark):
    parsed, dead = codec.parse_messages(
        kafka_rows(spark, [GOOD_MESSAGE, b"nope", {**GOOD_MESSAGE, "transaction_id": "t2"}]))
    assert sorted(r["transaction_id"] for r in parsed.collect()) == ["t1", "t2"]
    assert [r["source_offset"] for r in dead.collect()] == [1]


def test_dead_letter_message_holds_reason_coordinates_and_exact_bytes(spark):
    raw = b"\xff not json"
    _, dead = codec.parse_messages(kafka_rows(spark, [raw], keys=[b"k9"], partition=1))
    message = codec.dead_letter_messages(dead).collect()[0]
    assert message["key"] == bytearray(b"k9")
    body = json.loads(message["value"])
    assert body["reason"] == "not a JSON object"
    assert (body["source_topic"], body["source_partition"], body["source_offset"]) == ("transactions", 1, 0)
    assert base64.b64decode(body["value_base64"]) == raw
    assert body["key"] == "k9"


# --------------------------------------------------------------------------- alerts and Cassandra rows


def scored_rows(spark, scores):
    """Scored rows (the stream's columns) with the given fraud scores, ids s0, s1, ..."""
    base = {name: None for name in schemas.STREAM_SCORED_COLUMNS}
    rows = []
    for i, score in enumerate(scores):
        when = START + dt.timedelta(days=i)
        rows.append({**base, "transaction_id": f"s{i}", "step": i, "customer": "C1", "age": "2", "gender": "F",
                     "merchant": "M1", "category": "es_food", "amount": 10.0 + i, "fraud": 0, "event_time": when,
                     "event_month": when.strftime("%Y-%m"), "fraud_probability": score, "fraud_score": score,
                     "risk_tier": "low", "reasons": ["model_score"] if (score or 0) >= 0.5 else [],
                     "model_version": "3", "kafka_timestamp": when + dt.timedelta(hours=1)})
    schema = T.StructType([*schemas.SCORED_SCHEMA.fields, T.StructField("kafka_timestamp", T.TimestampType())])
    return spark.createDataFrame([tuple(r[c] for c in schema.fieldNames()) for r in rows], schema)


def test_alerts_are_the_rows_at_or_above_the_threshold(spark):
    sent = alerts.select_alerts(scored_rows(spark, [0.79999, 0.8, 0.95, None]), 0.8).collect()
    assert sorted(a["key"] for a in sent) == ["s1", "s2"]


def test_alert_value_carries_score_and_reasons(spark):
    alert = alerts.select_alerts(scored_rows(spark, [0.9]), 0.8).collect()[0]
    body = json.loads(alert["value"])
    assert (body["transaction_id"], body["fraud_score"], body["reasons"]) == ("s0", 0.9, ["model_score"])
    assert body["event_time"] == "2024-01-01T00:00:00.000Z"
    assert set(body) == set(schemas.ALERT_FIELDS) - {"duplicate_of"}  # null fields are left out


def test_cassandra_rows_map_every_table_column(spark):
    rows = alerts.cassandra_rows(scored_rows(spark, [0.2, 0.85]), 0.8, scored_at_ms=1_700_000_000_000)
    assert rows.columns == schemas.CASSANDRA_ROW_COLUMNS
    low, high = sorted(rows.collect(), key=lambda r: r["transaction_id"])
    epoch_2024 = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert (high["event_time"], high["alert_date"], high["is_alert"]) == (
        epoch_2024 + 86_400_000, dt.date(2024, 1, 2), True)
    assert (low["is_alert"], low["scored_at"], low["kafka_timestamp_ms"]) == (
        False, 1_700_000_000_000, epoch_2024 + 3_600_000)
    assert (high["customer"], high["step"], high["amount"], high["fraud_score"], high["reasons"]) == (
        "C1", 1, 11.0, 0.85, ["model_score"])
    assert set(schemas.SCORED_TABLE_COLUMNS) | set(schemas.HISTORY_TABLE_COLUMNS) <= set(rows.columns)


def test_insert_statements_name_the_table_columns_in_order():
    settings = sink.CassandraSettings(keyspace="ks")
    cql = sink.insert_cql(settings, schemas.HISTORY_TABLE, schemas.HISTORY_TABLE_COLUMNS)
    assert cql == ("INSERT INTO ks.customer_history (customer, step, transaction_id, merchant, amount) "
                   "VALUES (?, ?, ?, ?, ?)")


def test_only_bad_statements_are_not_retried():
    from cassandra import InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    assert all(sink.is_retryable(e) for e in (
        OperationTimedOut(), WriteTimeout("x", write_type=0), Unavailable("x"), NoHostAvailable("down", {})))
    assert not sink.is_retryable(InvalidRequest("no such table"))
    assert not sink.is_retryable(TypeError("bad value"))


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
    """The rows sink.fetch_history_partition yields for ``requests`` from a table holding ``stored_data``."""
    out = []
    for req in requests.collect():
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
    stored = what_cassandra_returns(spark, stored_data, history.history_requests(batch, WINDOW))
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
    replay = stream_history(spark, earlier + later, later)  # the batch's rows were written before it failed
    assertDataFrameEqual(replay.select(*HISTORY_FIELDS), first.select(*HISTORY_FIELDS), rtol=1e-9)


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
    requests = history.history_requests(parsed_batch(spark, batch), WINDOW)
    steps = {}
    for row in batch:
        steps.setdefault(row[2], []).append(row[1])
    assert {r["customer"]: (r["context_from_step"], r["context_to_step"]) for r in requests.collect()} == {
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


# --------------------------------------------------------------------------- replay pace and figures


def test_replay_order_is_by_step_and_limit_takes_the_first_rows(spark):
    df = prepared(spark, [("b", 2, "C1", "M1", "es_food", 1.0, 0), ("a", 2, "C1", "M1", "es_food", 2.0, 0),
                          ("c", 0, "C2", "M1", "es_food", 3.0, 0)])
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
