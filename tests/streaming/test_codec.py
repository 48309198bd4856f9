"""Transaction messages in and out of Kafka, each kind of malformed message, dead letters: no Kafka."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from pyspark.testing import assertDataFrameEqual

from fraudlab.schemas import PREPARED_COLUMNS, PREPARED_SCHEMA
from fraudlab.streaming import codec
from tests.streaming.rows import GOOD_MESSAGE, as_kafka, kafka_rows, prepared_rows

pytestmark = pytest.mark.spark




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
