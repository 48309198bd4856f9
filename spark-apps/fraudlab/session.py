"""The one SparkSession builder of the lab, with small-machine defaults."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

#: Settings that suit a laptop and a 2-core CI box; a cluster overrides them with --conf.
SMALL_MACHINE_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
}


def build_spark(app_name: str, master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active session, or build one named ``app_name``.

    Under spark-submit the submitter decides the master and its ``--conf`` wins
    over these defaults; under plain ``python`` the session is ``local[*]``.
    Local runs should have ``SPARK_LOCAL_IP=127.0.0.1`` (the Makefile and the
    tests set it) so Spark never listens on an external interface.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif not under_submit:
        builder = builder.master("local[*]")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # Defaults apply only where neither spark-submit nor the caller set the key.
    submitted = spark.sparkContext.getConf()
    for key, value in SMALL_MACHINE_CONF.items():
        if not submitted.contains(key) and key not in (conf or {}):
            spark.conf.set(key, value)
    spark.sparkContext.setLogLevel(os.environ.get("FRAUDLAB_SPARK_LOG_LEVEL", "WARN"))
    return spark

