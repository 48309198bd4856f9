"""The harness of the compose tests: an engine, the images, the stack up, and down at the end.

Package-scoped, so the stack (about 6 GB with Airflow) is down before the rest of the suite runs.
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

from services import docker_engine
from tests.compose import ARTIFACTS, BUILD_TIMEOUT_S, LEFT_OUT_OFFLINE, PORTS, PROJECT, UP_TIMEOUT_S, Stack, env_for

MODULE_ORDER = ("test_health", "test_readme_commands", "test_airflow", "test_streaming", "test_jupyter",
                "test_durability")


def pytest_collection_modifyitems(items):
    def rank(item):
        module = Path(str(item.fspath)).stem
        return MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)

    compose_items = [i for i in items if "tests/compose/" in str(i.fspath)]
    if not compose_items:
        return
    first = items.index(compose_items[0])
    others = [i for i in items if i not in compose_items]
    ordered = sorted(compose_items, key=rank)  # stable: definition order inside a module
    items[:] = others[:first] + ordered + others[first:]


@pytest.fixture(scope="package")
def engine():
    """A Docker engine: the running one, or dockerd started here (and stopped at the end)."""
    try:
        found = docker_engine.up()
    except (docker_engine.EngineError, OSError) as exc:
        pytest.fail(str(exc), pytrace=False)
    yield found
    if found.started_here:
        docker_engine.down()


def _images(stack: Stack) -> str:
    out = stack.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    return "\n".join(f"  {line}" for line in sorted(out.splitlines())
                     if line.startswith(("fraudlab/", "debian:")))


@pytest.fixture(scope="package")
def stack(engine):
    """The project built with the offline override and up (``up --wait``); ``down -v`` at the end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env_file = Path(tempfile.mkdtemp(prefix="fraudlab-compose-")) / "stack.env"
    env_file.write_text("".join(f"{name}={port}\n" for name, port in PORTS.items()))
    cmd = [*docker_engine.compose_command(project=PROJECT), "--env-file", str(env_file)]
    stack = Stack(env=env_for(engine.host), compose_cmd=cmd)
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

    copied = docker_engine.copy_machine_certs()
    stack.notes.append(f"extra CA certificates copied to docker/certs/: {', '.join(copied) or 'none'}")
    started = time.perf_counter()
    how = docker_engine.ensure_base_image(engine)
    stack.timings[f"base image ({how})"] = time.perf_counter() - started

    had_images = bool(stack.docker("image", "ls", "-q", "fraudlab/spark").stdout.strip())
    started = time.perf_counter()
    services = stack.compose("config", "--services").stdout.split()
    try:
        each = docker_engine.build_images(stack.compose_cmd, stack.env, services, timeout=BUILD_TIMEOUT_S)
    except docker_engine.EngineError as exc:
        pytest.fail(str(exc), pytrace=False)
    cache = "warm" if had_images else "cold"
    stack.timings[f"build, all images ({cache} image cache)"] = time.perf_counter() - started
    stack.timings.update({f"  build {name} ({cache})": seconds for name, seconds in each.items()})

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
