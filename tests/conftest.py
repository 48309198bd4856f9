"""Shared fixtures: one local SparkSession for the session, and a spark-submit runner.

The environment is set before anything imports pyspark (or, later, Airflow), so
every test sees the same Spark home, configuration folder and loopback binding
as `make demo` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_CONF_DIR", str(REPO / "compose" / "spark"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("FRAUDLAB_SPARK_LOG_LEVEL", "ERROR")

#: The JIT flag of every Spark driver the tests start (spark-submit, in-process sessions, Airflow's
#: tasks; local executors run in the driver): the tests' jobs are small, so a driver with the full
#: two-tier JIT spends most of its CPU compiling code it then barely runs. C1 alone, measured on
#: 3,000 rows on 2 cores: prepare_data 48 -> 29 CPU s (29 -> 24 s), fit_model --search smoke
#: 115 -> 61 CPU s (65 -> 44 s). Added to whatever SPARK_SUBMIT_OPTS already holds (a proxy, say);
#: the long-running servers (Kafka, Cassandra, the standalone cluster) keep the full JIT.
TEST_DRIVER_JIT = "-XX:TieredStopAtLevel=1"
if TEST_DRIVER_JIT not in os.environ.get("SPARK_SUBMIT_OPTS", "").split():
    os.environ["SPARK_SUBMIT_OPTS"] = f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} {TEST_DRIVER_JIT}".strip()

import pyspark  # noqa: E402  (after the environment is set)

os.environ.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))

SPARK_APPS = REPO / "spark-apps"

#: Real Kafka and Cassandra, started by the harness when a test asks for them.
pytest_plugins = ["tests.services.fixtures"]


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session."""
    from fraudlab.session import build_spark

    session = build_spark(
        "fraudlab-tests",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
              "spark.driver.memory": "2g"},
    )
    yield session
    session.stop()


def spark_submit_command(app: str, *args: str, master: str = "local[2]",
                         extra_submit_args: list[str] | None = None) -> list[str]:
    """``spark-submit --master <master> --conf spark.ui.enabled=false [extra] spark-apps/<app> <args>``."""
    return [str(VENV_BIN / "spark-submit"), "--master", master, "--conf", "spark.ui.enabled=false",
            *(extra_submit_args or []), str(SPARK_APPS / app), *args]


def run_spark_app(app: str, *args: str, master: str = "local[2]", timeout: int = 900,
                  extra_submit_args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``spark-apps/<app>`` through the real ``spark-submit`` and return the finished process."""
    cmd = spark_submit_command(app, *args, master=master, extra_submit_args=extra_submit_args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def kill_spark_app_when(app: str, *args: str, ready, timeout: float = 600,
                        extra_submit_args: list[str] | None = None) -> None:
    """Start ``spark-apps/<app>`` through ``spark-submit`` and SIGKILL its whole process group (the
    launcher, the driver's JVM and Python) as soon as ``ready()`` is true, polled every 20 ms.

    Fails when the app ends first: the kill then proved nothing.
    """
    import signal
    import tempfile
    import time

    cmd = spark_submit_command(app, *args, extra_submit_args=extra_submit_args)
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"{app} ended (exit {proc.returncode}) before the kill point:\n"
                                     f"{log.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{app} did not reach the kill point in {timeout:.0f} s")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()


@pytest.fixture(scope="session")
def spark_submit():
    """The :func:`run_spark_app` runner, as a fixture."""
    return run_spark_app


def run_python_app(app: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``spark-apps/<app>`` with the venv's Python, as a user would: for an app that needs no
    Spark (``generate_transactions.py``) or that refuses its flags before it starts a session."""
    cmd = [sys.executable, str(SPARK_APPS / app), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
