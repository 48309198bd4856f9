"""The set-up guard: a missing Java stops `make` with one sentence."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_missing_java_stops_with_one_sentence():
    proc = subprocess.run(["/bin/bash", str(REPO / "scripts" / "check_java.sh")],
                          env={"PATH": "/nonexistent"}, capture_output=True, text=True)
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert message.startswith("Java 17 is required") and "install OpenJDK 17" in message
    assert len(message.splitlines()) == 1


def test_present_java_passes_the_check():
    proc = subprocess.run(["/bin/bash", str(REPO / "scripts" / "check_java.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
