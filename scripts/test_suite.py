"""`make test`: the compose tests in a second pytest session beside the rest of the suite.

The compose tests spend most of their time waiting on containers (image builds, `up --wait`, the
DAG run on the cluster), the rest of the suite on local JVMs: on 2 cores the two overlap well, so
they run at the same time instead of one after the other. The compose session writes to
``tests/artifacts/compose/pytest.log``; its output is printed once the main session is done. The
exit status is 0 only when both sessions passed. ``python -m pytest`` alone still runs everything
in one session (the compose tests last).

    python scripts/test_suite.py [pytest arguments for the main session]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPOSE_TESTS = "tests/compose"
COMPOSE_LOG = REPO / "tests" / "artifacts" / "compose" / "pytest.log"
#: How long an interrupted compose session gets to run its teardown (``compose down``, the engine).
TEARDOWN_S = 600


def pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


def run(main: list[str], background: list[str], log: Path, label: str) -> int:
    """Run ``background`` (output to ``log``) while ``main`` runs in the foreground; 0 when both pass."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        side = subprocess.Popen(background, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"test: {label} runs beside the rest of the suite (log: {log})", flush=True)
    try:
        main_rc = subprocess.call(main, cwd=REPO)
        if side.poll() is None:
            print(f"\ntest: waiting for {label} to finish (log: {log})", flush=True)
        side_rc = side.wait()
    except KeyboardInterrupt:
        os.killpg(side.pid, signal.SIGINT)  # pytest runs its teardown on SIGINT: the stack goes down
        try:
            side.wait(timeout=TEARDOWN_S)
        except subprocess.TimeoutExpired:
            os.killpg(side.pid, signal.SIGKILL)
        raise
    print(f"\n{'=' * 30} {label} (from {log}) {'=' * 30}", flush=True)
    sys.stdout.write(log.read_text(errors="replace"))
    sys.stdout.flush()
    print(f"test: main session exit {main_rc}, {label} exit {side_rc}", flush=True)
    return 0 if main_rc == 0 and side_rc == 0 else 1


def main(argv: list[str]) -> int:
    return run(pytest(f"--ignore={COMPOSE_TESTS}", *argv), pytest("-p", "no:cacheprovider", COMPOSE_TESTS),
               COMPOSE_LOG, COMPOSE_TESTS)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
