"""The compose stack for real: every image built, every service up under a real Docker engine.

The harness (``conftest.py``) gets an engine from ``services.docker_engine`` (the running one, or
its own ``dockerd`` under ``.lab/run/docker``, stopped afterwards), makes sure the base image is
there (pulled, or built offline with debootstrap), copies this machine's extra CA certificates into
``docker/certs/``, builds every image with the offline override (``compose/offline.yml``: no
registry is needed), brings the project ``fraudlab`` up with ``up --wait`` and takes it down with
``down -v`` at the end of the package. The host ports are moved to 2xxxx (an env file of the
harness), so a Docker-free lab or service runner on the default ports can run at the same time;
everything inside the compose network is as the README says.

Run alone: ``make test-compose`` (about 25 minutes on 2 cores from a cold image cache). For
development only, ``FRAUDLAB_COMPOSE_REUSE=1`` runs the tests against a stack that is already up (no
build, no up, no down); the tests then assume nothing about its state, so counts may not hold.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services import lab

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "compose"
PROJECT = "fraudlab"

#: Host ports of the stack under test (the compose files' tunables), away from the defaults.
PORTS = {
    "SPARK_MASTER_UI_PORT": 28080,
    "SPARK_MASTER_PORT": 27077,
    "SPARK_WORKER_A_UI_PORT": 28081,
    "SPARK_WORKER_B_UI_PORT": 28082,
    "KAFKA_PORT": 29092,
    "KAFKA_UI_PORT": 23030,
    "CASSANDRA_PORT": 29042,
    "MLFLOW_PORT": 25000,
    "JUPYTER_PORT": 28888,
    "AIRFLOW_API_PORT": 28180,
}
HOST = "127.0.0.1"
BUILD_TIMEOUT_S = 45 * 60
UP_TIMEOUT_S = 15 * 60
#: One-shot services: they must exit 0; every other service must be running and healthy.
ONE_SHOT = ("airflow-secrets", "airflow-init", "kafka-init", "cassandra-init")
#: Left out by compose/offline.yml: no package registry serves a build of it.
LEFT_OUT_OFFLINE = {"kafka-ui": "kafbat/kafka-ui: no registry here serves its image or its jar"}

def url(port_name: str, path: str = "") -> str:
    return f"http://{HOST}:{PORTS[port_name]}{path}"


def http(method: str, address: str, token: str | None = None, body: object = None,
         timeout: float = 30) -> tuple[int, object]:
    """One request to a published port (services.lab's client, with a timeout for a loaded stack)."""
    return lab.http(method, address, token, body, timeout)


@dataclass
class Stack:
    """The running project: compose and docker commands against it, and what was measured."""

    env: dict[str, str]
    compose_cmd: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    peak_memory_mib: float = 0.0

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.compose_cmd, *args], cwd=REPO, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return done

    def docker(self, *args: str, timeout: float = 600, check: bool = True,
               input_text: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, input=input_text)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return done

    def container(self, service: str) -> str:
        return f"{PROJECT}-{service}-1"

    def exec(self, service: str, *cmd: str, timeout: float = 900, check: bool = True,
             user: str | None = None) -> subprocess.CompletedProcess:
        """``docker exec`` in the service's container."""
        args = ["exec", *(["--user", user] if user else []), self.container(service), *cmd]
        return self.docker(*args, timeout=timeout, check=check)

    def spark_submit(self, app: str, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
        """``spark-submit`` of ``/opt/spark-apps/<app>`` on the standalone cluster, from worker a."""
        return self.exec("spark-worker-a", "spark-submit", "--master", "spark://spark-master:7077",
                         f"/opt/spark-apps/{app}", *args, timeout=timeout)

    def cql(self, statement: str) -> str:
        """cqlsh in the Cassandra container; its output."""
        return self.exec("cassandra", "cqlsh", "-e", statement, timeout=120).stdout

    def cql_values(self, statement: str) -> list[str]:
        """The first column of a cqlsh result, row by row (the lines between the header rule and the count)."""
        lines = self.cql(statement).splitlines()
        rule = next((i for i, line in enumerate(lines) if re.fullmatch(r"\s*-+(\+-+)*\s*", line)), None)
        assert rule is not None, "no result table in cqlsh output:\n" + "\n".join(lines)
        values = []
        for line in lines[rule + 1:]:
            if not line.strip():
                break
            values.append(line.split("|")[0].strip())
        return values

    def cql_count(self, table: str) -> int:
        """``SELECT COUNT(*)`` of ``table``: the one value of its result."""
        values = self.cql_values(f"SELECT COUNT(*) FROM {table}")
        assert len(values) == 1 and values[0].isdigit(), f"no count in cqlsh's result: {values}"
        return int(values[0])

    def ps(self) -> list[dict]:
        """``compose ps -a`` as a list of containers (state, health, exit code, publishers)."""
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def sample_memory(self) -> float:
        """The stack's memory now (sum over its containers, MiB); keeps the peak."""
        out = self.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", check=False).stdout
        total = 0.0
        for line in out.splitlines():
            name, _, usage = line.partition(" ")
            if not name.startswith(f"{PROJECT}-"):
                continue
            match = re.match(r"([\d.]+)\s*([KMG]i?B)", usage)
            if match:
                scale = {"KiB": 1 / 1024, "KB": 1 / 1024, "MiB": 1, "MB": 1, "GiB": 1024, "GB": 1024}[match.group(2)]
                total += float(match.group(1)) * scale
        self.peak_memory_mib = max(self.peak_memory_mib, total)
        return total

    def airflow_password(self) -> str:
        """The admin password Airflow generated at first start (the simple auth manager's file)."""
        raw = self.exec("airflow-apiserver", "cat", "/opt/airflow/secrets/simple_auth_manager_passwords.json").stdout
        return json.loads(raw)["admin"]

    def airflow_token(self) -> str:
        status, body = http("POST", url("AIRFLOW_API_PORT", "/auth/token"),
                            body={"username": "admin", "password": self.airflow_password()})
        assert status in (200, 201) and isinstance(body, dict), f"no token: HTTP {status} {body}"
        return body["access_token"]

    def trigger_dag(self, dag_id: str, conf: dict, timeout: float = 1800) -> dict:
        """Trigger ``dag_id`` over REST API v2 and wait for a final state; returns the run."""
        token = self.airflow_token()
        api = url("AIRFLOW_API_PORT", "/api/v2")
        status, body = http("PATCH", f"{api}/dags/{dag_id}", token, {"is_paused": False})
        assert status == 200, f"unpause {dag_id}: HTTP {status} {body}"
        status, run = http("POST", f"{api}/dags/{dag_id}/dagRuns", token, {"logical_date": None, "conf": conf})
        assert status in (200, 201), f"trigger {dag_id}: HTTP {status} {run}"
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(10)
            self.sample_memory()
            token = self.airflow_token()
            status, run = http("GET", f"{api}/dags/{dag_id}/dagRuns/{run_id}", token)
            if status == 200 and run["state"] in ("success", "failed"):
                break
        status, tasks = http("GET", f"{api}/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token)
        run["task_states"] = {t["task_id"]: t["state"] for t in tasks.get("task_instances", [])} \
            if isinstance(tasks, dict) else {}
        return run

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        token = self.airflow_token()
        api = url("AIRFLOW_API_PORT", "/api/v2")
        status, body = http("GET", f"{api}/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/"
                            f"{try_number}?full_content=true", token)
        return json.dumps(body)[-6000:] if status == 200 else f"HTTP {status}"


def readme_stack_commands(readme: Path = REPO / "README.md") -> list[str]:
    """The README's ``docker exec ... spark-submit`` commands of the stack, lines joined."""
    text = readme.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines()
                     if line.strip().startswith("docker exec") and "spark-submit" in line]
    return commands


def split_command(command: str) -> list[str]:
    return shlex.split(command)


def env_for(host: str) -> dict[str, str]:
    """The environment of every compose and docker call of the harness."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env["DOCKER_HOST"] = host
    return env
