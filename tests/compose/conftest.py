"""The harness of the compose tests: an engine, the images, the stack up, and down at the end.

The package runs last in the session, and what takes longest before the first compose test, the
engine and every image (about 12 minutes from a cold cache, most of it downloads), is prepared in a
background thread that starts as soon as collection picks a compose test: it overlaps the rest of
the suite, with the engine's processes at nice 10 so the other tests keep the CPU. The fixtures
then wait for it. The stack (about 7 GB with Airflow) comes up only when the package starts.

The tests of this package depend on each other's data the way a user's session does (the README's
commands make the data the DAG runs use; the notebooks read what the DAGs wrote), so they run in
the order of ``MODULE_ORDER``, the durability test last.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from services import docker_engine, runner
from tests.compose import ARTIFACTS, BUILD_TIMEOUT_S, LEFT_OUT_OFFLINE, PORTS, PROJECT, UP_TIMEOUT_S, Stack, env_for

MODULE_ORDER = ("test_health", "test_readme_commands", "test_airflow", "test_streaming", "test_jupyter",
                "test_durability")
#: The niceness of this harness's own dockerd (and the builds it runs) while other tests run.
BUILD_NICENESS = 10


class Preparation:
    """The engine and every image, prepared in a thread while the rest of the suite runs."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.engine: docker_engine.Engine | None = None
        self.stack: Stack | None = None
        self.error: str | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="compose-preparation", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.engine = docker_engine.up()
            if self.engine.started_here:
                _renice(BUILD_NICENESS)
            self.stack = _prepare(self.engine)
        except (docker_engine.EngineError, OSError, AssertionError) as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported by the fixture that waits for it
            self.error = f"{type(exc).__name__}: {exc}"

    def wait(self) -> tuple[docker_engine.Engine, Stack]:
        self.start()
        assert self.thread is not None
        self.thread.join(timeout=2 * BUILD_TIMEOUT_S)
        if self.thread.is_alive():
            pytest.fail(f"the engine and images were not ready within {2 * BUILD_TIMEOUT_S / 60:.0f} minutes",
                        pytrace=False)
        if self.error or self.engine is None or self.stack is None:
            pytest.fail(self.error or "the compose preparation ended without an engine", pytrace=False)
        return self.engine, self.stack


PREPARATION = Preparation()
#: Set once the package's engine fixture holds the engine (it stops it at the end).
_ENGINE_IN_USE = threading.Event()


def _renice(niceness: int) -> None:
    """Set the niceness of this lab's dockerd process group (containerd and the builds inherit it)."""
    pid = runner.running_pid(docker_engine.NAME)
    if pid is not None:
        try:
            os.setpriority(os.PRIO_PGRP, os.getpgid(pid), niceness)
        except OSError:
            pass  # the engine runs as it was started: only slower for the other tests


def _images(stack: Stack) -> str:
    out = stack.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    return "\n".join(f"  {line}" for line in sorted(out.splitlines())
                     if line.startswith(("fraudlab/", "debian:")))


def _prepare(engine: docker_engine.Engine) -> Stack:
    """Certificates, the base image and every image built with the offline override; a Stack to bring up."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env_file = Path(tempfile.mkdtemp(prefix="fraudlab-compose-")) / "stack.env"
    env_file.write_text("".join(f"{name}={port}\n" for name, port in PORTS.items()))
    cmd = [*docker_engine.compose_command(project=PROJECT), "--env-file", str(env_file)]
    stack = Stack(env=env_for(engine.host), compose_cmd=cmd)
    if os.environ.get("FRAUDLAB_COMPOSE_REUSE") == "1":
        return stack
    copied = docker_engine.copy_machine_certs()
    stack.notes.append(f"extra CA certificates copied to docker/certs/: {', '.join(copied) or 'none'}")
    started = time.perf_counter()
    how = docker_engine.ensure_base_image(engine)
    stack.timings[f"base image ({how})"] = time.perf_counter() - started

    had_images = bool(stack.docker("image", "ls", "-q", "fraudlab/spark").stdout.strip())
    started = time.perf_counter()
    services = stack.compose("config", "--services").stdout.split()
    each = docker_engine.build_images(stack.compose_cmd, stack.env, services, timeout=BUILD_TIMEOUT_S)
    cache = "warm" if had_images else "cold"
    stack.timings[f"build, all images ({cache} image cache, beside the rest of the suite)"] = \
        time.perf_counter() - started
    stack.timings.update({f"  build {name} ({cache})": seconds for name, seconds in each.items()})
    return stack


def pytest_collection_modifyitems(config, items):
    """Compose tests last, in MODULE_ORDER; their engine and images start preparing now."""

    def rank(item):
        module = Path(str(item.fspath)).stem
        return MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)

    compose_items = [i for i in items if "tests/compose/" in str(i.fspath)]
    if not compose_items:
        return
    others = [i for i in items if i not in compose_items]
    items[:] = others + sorted(compose_items, key=rank)  # stable: definition order inside a module
    if not config.option.collectonly:
        PREPARATION.start()


def pytest_sessionfinish(session):
    """Stop the engine the preparation started if the compose tests never got to it (a stop, -x)."""
    engine = PREPARATION.engine
    if engine is not None and engine.started_here and not _ENGINE_IN_USE.is_set():
        docker_engine.down()


@pytest.fixture(scope="package")
def engine():
    """A Docker engine: the running one, or dockerd started here (and stopped at the end)."""
    found, _ = PREPARATION.wait()
    _ENGINE_IN_USE.set()
    if found.started_here:
        _renice(0)
    yield found
    if found.started_here:
        docker_engine.down()


@pytest.fixture(scope="package")
def stack(engine):
    """The project built with the offline override and up (``up --wait``); ``down -v`` at the end."""
    _, stack = PREPARATION.wait()
    if os.environ.get("FRAUDLAB_COMPOSE_REUSE") == "1":
        # Development only (never in CI): run the tests against the stack that is up, as it is.
        yield stack
        return
    existing = stack.ps()
    volumes = stack.docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout
    if existing or volumes.strip():
        pytest.fail(f"this engine already holds a compose project `{PROJECT}` (containers or volumes): the "
                    f"tests start from an empty one and remove it at the end, so stop yours first "
                    f"(`make down`, and `docker volume rm` its volumes if you do not need them)", pytrace=False)

    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(20):
            stack.sample_memory()

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        started = time.perf_counter()
        stack.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 120)
        stack.timings["up --wait (first start)"] = time.perf_counter() - started
        sampler.start()
        yield stack
    finally:
        sampling.set()
        logs = stack.compose("logs", "--no-color", "--timestamps", timeout=300, check=False)
        (ARTIFACTS / "compose.log").write_text(logs.stdout + logs.stderr)
        images = _images(stack)
        stack.compose("down", "-v", "--remove-orphans", timeout=600, check=False)
        report = [
            "compose stack summary:",
            *(f"  timing: {name}: {seconds:.0f} s" for name, seconds in stack.timings.items()),
            f"  peak memory of the running stack (docker stats, sum over containers): "
            f"{stack.peak_memory_mib / 1024:.2f} GiB",
            "  image sizes:", images,
            *(f"  left out offline: {name} ({why})" for name, why in LEFT_OUT_OFFLINE.items()),
            *(f"  {note}" for note in stack.notes),
        ]
        text = "\n".join(report)
        (ARTIFACTS / "summary.txt").write_text(text + "\n")
        print("\n" + text)
        terminal = os.environ.get("FRAUDLAB_COMPOSE_SUMMARY")
        if terminal:
            Path(terminal).write_text(text + "\n")
