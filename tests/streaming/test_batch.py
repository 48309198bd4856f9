"""The stream query's session settings (``fraudlab.streaming.batch``): no Kafka, no Cassandra."""

from __future__ import annotations


import pytest

from fraudlab.streaming import batch


pytestmark = pytest.mark.spark


# --------------------------------------------------------------------------- the stream's session settings


def test_stream_conf_applies_over_the_submitted_settings(spark):
    keys = ("spark.sql.shuffle.partitions", "spark.sql.adaptive.enabled")
    before = {key: spark.conf.get(key) for key in keys}
    # The session was built with its own shuffle partitions (as spark-defaults.conf sets 8 and adaptive on).
    assert spark.sparkContext.getConf().contains("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    try:
        effective = batch.apply_stream_conf(spark, shuffle_partitions=3)
        assert {key: spark.conf.get(key) for key in keys} == effective == {
            "spark.sql.shuffle.partitions": "3", "spark.sql.adaptive.enabled": "false"}
        assert batch.apply_stream_conf(spark)["spark.sql.shuffle.partitions"] == "2"
        with pytest.raises(ValueError):
            batch.apply_stream_conf(spark, shuffle_partitions=0)
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)
