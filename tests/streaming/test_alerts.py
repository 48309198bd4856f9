"""Alert selection at the threshold and the Cassandra row mapping of scored rows: no Kafka, no Cassandra."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import types as T

from fraudlab import schemas
from fraudlab.streaming import alerts
from tests.streaming.rows import START

pytestmark = pytest.mark.spark


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
    # The alert's message rides with its row: the alerts topic's value, null for a row that is no alert.
    sent = alerts.select_alerts(scored_rows(spark, [0.2, 0.85]), 0.8).collect()
    assert (low["alert_message"], high["alert_message"]) == (None, sent[0]["value"])
