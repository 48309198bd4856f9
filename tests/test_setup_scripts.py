"""The set-up guards and the static checks of the stack files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE_BIN = Path(sys.executable).parents[1] / "lib" / "python3.11" / "site-packages" / "compose" / "docker-compose"


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


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["airflow-compose.yaml"],
                                   ["docker-compose.yml", "airflow-compose.yaml"]],
                         ids=["lab", "airflow", "merged"])
def test_compose_files_validate_with_the_real_compose_binary(files):
    args = [str(COMPOSE_BIN)]
    for name in files:
        args += ["-f", str(REPO / name)]
    proc = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_the_compose_binary_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("services:\n  x:\n    image: a\n    ports: [oops\n")
    proc = subprocess.run([str(COMPOSE_BIN), "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert proc.returncode != 0
