"""Failpoints (``fraudlab.failpoints``): they fire where named, once when asked, and refuse a typo.

A failpoint SIGKILLs its process, so the firing cases run in a child Python process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fraudlab import failpoints

SPARK_APPS = Path(__file__).resolve().parents[1] / "spark-apps"


def hit(point: str, where: str, **env: str) -> subprocess.CompletedProcess:
    code = f"from fraudlab.failpoints import failpoint; failpoint({point!r}, {where!r}); print('passed')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SPARK_APPS), **env})


@pytest.mark.parametrize("value", ["after_cassandra", "after_casandra:1", "after_kafka:x", "1:after_kafka",
                                   "before_swap:", "before-swap:claims"])
def test_a_failpoint_that_names_no_point_is_an_error_not_a_silent_no_op(monkeypatch, value):
    monkeypatch.setenv(failpoints.FAILPOINT_ENV, value)
    with pytest.raises(ValueError, match="is not <point>:<batch id or folder name>"):
        failpoints.failpoint("after_kafka", 1)


def test_a_failpoint_for_another_point_or_place_does_nothing(monkeypatch):
    monkeypatch.setenv(failpoints.FAILPOINT_ENV, "after_kafka:2")
    failpoints.failpoint("after_kafka", 1)
    failpoints.failpoint("after_cassandra", 2)
    monkeypatch.setenv(failpoints.FAILPOINT_ENV, "before_swap:claims")
    failpoints.failpoint("before_swap", "month=2024-06")
    monkeypatch.delenv(failpoints.FAILPOINT_ENV)
    failpoints.failpoint("after_kafka", 2)


def test_a_failpoint_kills_where_named(tmp_path):
    done = hit("before_swap", "claims", FRAUDLAB_FAILPOINT="before_swap:claims")
    assert done.returncode == -signal.SIGKILL and "passed" not in done.stdout


def test_a_once_failpoint_kills_the_first_run_only(tmp_path):
    marker = tmp_path / "fired"
    env = {"FRAUDLAB_FAILPOINT": "after_kafka:3", "FRAUDLAB_FAILPOINT_ONCE": str(marker)}
    first, second = hit("after_kafka", "3", **env), hit("after_kafka", "3", **env)
    assert first.returncode == -signal.SIGKILL and marker.exists()
    assert second.returncode == 0 and second.stdout.strip() == "passed"
