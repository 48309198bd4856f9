"""Builders the stream's tests share: prepared rows and Kafka-shaped rows, no Kafka."""

from __future__ import annotations

import datetime as dt
import json

from fraudlab.config import DetectionConfig

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
