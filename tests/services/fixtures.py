"""Session fixtures for tests that need the real Kafka and Cassandra (plain JVMs, 127.0.0.1).

Register them in tests/conftest.py with ``pytest_plugins = ["tests.services.fixtures"]`` (or run
pytest with ``-p tests.services.fixtures``). Each service fixture fetches the jars if needed,
starts the service with :mod:`services.runner` (topics and schema applied), yields its
connection info and stops it at the end of the session, unless it was already running before
the session started: then it is left running.

* ``kafka_service`` -> :class:`services.runner.KafkaInfo` (``bootstrap_servers``, ``topics``...)
* ``cassandra_service`` -> :class:`services.runner.CassandraInfo` (``host``, ``port``,
  ``keyspace``, ``tables``...)
* ``spark_kafka_jars`` -> list of absolute jar paths for ``spark.jars`` (Spark's Kafka connector)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services import runner


def _session_service(name: str) -> Iterator[runner.KafkaInfo | runner.CassandraInfo]:
    was_running = runner.running_pid(name) is not None
    try:
        runner.fetch([name])
        info = runner.up([name])[name]
    except runner.ServiceError as exc:
        pytest.fail(f"{name} could not be started: {exc}\n{exc.detail}", pytrace=False)
    try:
        yield info
    finally:
        if not was_running:
            runner.down([name])


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[runner.KafkaInfo]:
    """A running single-node Kafka with the lab's topics; stopped after the session."""
    yield from _session_service("kafka")


@pytest.fixture(scope="session")
def cassandra_service() -> Iterator[runner.CassandraInfo]:
    """A running Cassandra node with the fraudlab schema; stopped after the session."""
    yield from _session_service("cassandra")


@pytest.fixture(scope="session")
def spark_kafka_jars() -> list[str]:
    """Spark 4.2.0's Kafka connector jars (fetched once), for the `spark.jars` setting."""
    try:
        runner.fetch(["spark-kafka"])
    except runner.ServiceError as exc:
        pytest.fail(f"spark-kafka jars could not be fetched: {exc}\n{exc.detail}", pytrace=False)
    return runner.spark_kafka_jars()
