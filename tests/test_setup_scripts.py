"""The set-up guard (a missing Java stops `make` with one sentence) and the two-session runner of `make test`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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


def load_test_suite():
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_suite_runner", REPO / "scripts" / "test_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("main_passes, side_passes", [(True, True), (True, False), (False, True)])
def test_make_test_passes_only_when_both_sessions_pass(tmp_path, capfd, main_passes, side_passes):
    """scripts/test_suite.py: two real pytest sessions at once, the side one's log printed after the main one."""
    suite = load_test_suite()
    for name, passes in (("main", main_passes), ("side", side_passes)):
        (tmp_path / f"test_{name}.py").write_text(f"def test_{name}():\n    assert {passes}\n")
    log = tmp_path / "logs" / "side.log"
    rc = suite.run(suite.pytest("-q", "-p", "no:cacheprovider", str(tmp_path / "test_main.py")),
                   suite.pytest("-q", "-p", "no:cacheprovider", str(tmp_path / "test_side.py")), log, "side")
    assert rc == (0 if main_passes and side_passes else 1)
    out = capfd.readouterr().out
    side_summary = "1 passed" if side_passes else "1 failed"
    assert side_summary in log.read_text() and side_summary in out
    assert out.index("main session exit") > out.index(side_summary)
