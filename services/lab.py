"""The Docker-free twin of the compose lab: the same topology as local processes on the same ports.

``docker-compose.yml`` + ``airflow-compose.yaml`` run the lab in containers; this module runs the
same services on this machine, bound to 127.0.0.1 only::

    .venv/bin/python -m services.lab up       # or: make lab-up
    .venv/bin/python -m services.lab status   # or: make lab-status (exit 0 all ready, 3 otherwise)
    .venv/bin/python -m services.lab down     # or: make lab-down

=====================  =====================================  ==========================================
service                address                                notes
=====================  =====================================  ==========================================
Spark master           spark://127.0.0.1:7077, UI :8080       standalone, ``spark-class ...Master``
Spark worker           UI http://127.0.0.1:8081               2 cores, 2 GiB (LAB_SPARK_WORKER_*)
Kafka                  127.0.0.1:9092                         :mod:`services.runner` (controller :9093)
Cassandra              127.0.0.1:9042                         :mod:`services.runner` (storage :7000)
MLflow                 http://127.0.0.1:5000                  SQLite store, proxied artifacts
Airflow                http://127.0.0.1:18080                 API server, scheduler (LocalExecutor),
                                                              DAG processor, triggerer; user ``admin``
JupyterLab             http://127.0.0.1:8888/lab              root ``notebooks/``, token auth
=====================  =====================================  ==========================================

State lives in ``.lab/run/lab/`` (git-ignored; ``LAB_STATE_DIR`` moves it): ``pids/``, ``logs/``,
``secrets/`` (mode 0700: the Airflow admin password, Airflow's JWT secret, API secret key and
Fernet key, the Jupyter token; generated at the first ``up``, never in the repository),
``airflow/`` (AIRFLOW_HOME with the SQLite metadata DB and task logs), ``mlflow/`` (SQLite store
and artifacts), ``spark/`` (the generated SPARK_CONF_DIR, the worker's work folder) and
``jupyter/`` (runtime files). Data written by the DAGs goes to ``FRAUDLAB_DATA`` (default
``data/``). ``make clean`` deletes ``.lab/run``, secrets included.

Rules:

* ``up`` is idempotent: services already running from this state folder are kept; a port taken
  by anything else stops ``up`` before it starts anything, with one sentence naming the port and
  (when it can be seen) the process. Every process runs in its own session; ``up`` waits until
  each one answers (Spark master ALIVE with the worker registered, MLflow ``/health``, Airflow's
  ``/api/v2/monitor/health`` plus the ``fraud_batch_local`` DAG parsed, Jupyter ``/api/status``
  with the token). If anything fails, what this call started is stopped again.
* Kafka and Cassandra come from :mod:`services.runner`. If one already runs (``make
  services-up``, or a test session through ``tests/services/fixtures.py``), the lab uses it and
  ``down`` leaves it running; ``down`` stops only the ones this lab started (recorded in
  ``started.json``). A test session that started Kafka or Cassandra stops them when it ends,
  whoever else uses them.
* ``down`` stops every process by its pid file: SIGTERM to its process group, a wait, then
  SIGKILL. Nothing else is ever signalled.
* The processes get an explicit environment (a few variables of the caller, such as PATH, HOME,
  JAVA_HOME and FRAUDLAB_DATA, plus the lab's own), never the caller's AIRFLOW_*/SPARK_* settings.
  Airflow gets ``compose/airflow/airflow.env`` plus the twin's values: the Spark connection
  ``spark://127.0.0.1:7077``, ``MLFLOW_TRACKING_URI=http://127.0.0.1:5000`` (the DAG's default
  tracking URI), the scheduler and triggerer without log servers (they would bind every interface).

Environment knobs: LAB_STATE_DIR [.lab/run/lab], LAB_SPARK_WORKER_CORES [2],
LAB_SPARK_WORKER_MEMORY [2g], LAB_READY_TIMEOUT [600] seconds, plus the LAB_* knobs of
:mod:`services.runner` for Kafka and Cassandra.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import runner, supervisor

log = logging.getLogger("services.lab")

REPO_ROOT = runner.REPO_ROOT
HOST = runner.HOST
STATE_DIR = Path(os.environ.get("LAB_STATE_DIR") or runner.RUN_DIR / "lab").resolve()
VENV_BIN = REPO_ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DAGS_DIR = REPO_ROOT / "dags"
SPARK_CONF_SOURCE = REPO_ROOT / "compose" / "spark"
AIRFLOW_SETTINGS = REPO_ROOT / "compose" / "airflow" / "airflow.env"

# The ports of docker-compose.yml / airflow-compose.yaml, published there on 127.0.0.1.
SPARK_MASTER_PORT = 7077
SPARK_MASTER_UI_PORT = 8080
SPARK_WORKER_UI_PORT = 8081
MLFLOW_PORT = 5000
AIRFLOW_PORT = 18080
JUPYTER_PORT = 8888

SPARK_MASTER_URL = f"spark://{HOST}:{SPARK_MASTER_PORT}"
MLFLOW_URL = f"http://{HOST}:{MLFLOW_PORT}"
AIRFLOW_URL = f"http://{HOST}:{AIRFLOW_PORT}"
JUPYTER_URL = f"http://{HOST}:{JUPYTER_PORT}"
SPARK_MASTER_UI = f"http://{HOST}:{SPARK_MASTER_UI_PORT}"
SPARK_WORKER_UI = f"http://{HOST}:{SPARK_WORKER_UI_PORT}"

AIRFLOW_USER = "admin"
#: The DAG whose parsing tells that Airflow is ready for the lab.
READY_DAG = "fraud_batch_local"

WORKER_CORES = os.environ.get("LAB_SPARK_WORKER_CORES", "2")
WORKER_MEMORY = os.environ.get("LAB_SPARK_WORKER_MEMORY", "2g")
READY_TIMEOUT = float(os.environ.get("LAB_READY_TIMEOUT", "600"))
STOP_TIMEOUT = 45.0

#: Variables passed through from the caller; everything else is set by the lab.
PASSTHROUGH_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "JAVA_HOME",
                   "TERM", "FRAUDLAB_DATA", "FRAUDLAB_HOME")

RUNNER_SERVICES = ("cassandra", "kafka")


class LabError(RuntimeError):
    """One sentence in ``str()``; supporting lines (a log's tail) in ``detail``."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# --------------------------------------------------------------------------------------------
# State folder


def pids_dir() -> Path:
    return STATE_DIR / "pids"


def logs_dir() -> Path:
    return STATE_DIR / "logs"


def secrets_dir() -> Path:
    return STATE_DIR / "secrets"


def airflow_home() -> Path:
    return STATE_DIR / "airflow"


def spark_conf_dir() -> Path:
    return STATE_DIR / "spark" / "conf"


def log_path(name: str) -> Path:
    return logs_dir() / f"{name}.log"


def secret_path(name: str) -> Path:
    return secrets_dir() / name


def read_secret(name: str) -> str:
    return secret_path(name).read_text().strip()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def ensure_secrets() -> None:
    """Generate each secret once (kept across down/up); files 0600 in a 0700 folder."""
    folder = secrets_dir()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    wanted: dict[str, Callable[[], str]] = {
        "airflow_admin_password": lambda: secrets.token_urlsafe(18),
        "airflow_jwt_secret": lambda: secrets.token_urlsafe(48),
        "airflow_api_secret_key": lambda: secrets.token_urlsafe(48),
        "airflow_fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jupyter_token": lambda: secrets.token_hex(24),
    }
    for name, make in wanted.items():
        if not secret_path(name).is_file() or not read_secret(name):
            _write_private(secret_path(name), make())
            log.info("secrets: generated %s", secret_path(name))
    # The simple auth manager's passwords file: {user: password}.
    passwords = {AIRFLOW_USER: read_secret("airflow_admin_password")}
    _write_private(secret_path("airflow_passwords.json"), json.dumps(passwords) + "\n")


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lab.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _started_file() -> Path:
    return STATE_DIR / "started.json"


def _runner_started_by_lab() -> list[str]:
    """Kafka/Cassandra that the lab started and that still run as the same process (pid recorded)."""
    try:
        recorded = json.loads(_started_file().read_text()).get("runner", {})
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(recorded, dict):
        return []
    return [name for name, pid in recorded.items()
            if name in RUNNER_SERVICES and pid and runner.running_pid(name) == pid]


def _record_runner_started(names: list[str]) -> None:
    pids = {name: runner.running_pid(name) for name in sorted(set(names))}
    _started_file().write_text(json.dumps({"runner": {n: p for n, p in pids.items() if p}}) + "\n")


# --------------------------------------------------------------------------------------------
# Environments


def _spark_home() -> Path:
    found = sorted((REPO_ROOT / ".venv" / "lib").glob("python3*/site-packages/pyspark"))
    if not found:
        raise LabError("no pyspark in .venv: run `make setup` first")
    return found[0]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (no quotes, no expansion); blank lines and # comments skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise LabError(f"{path}: not a KEY=VALUE line: {line!r}")
            values[key.strip()] = value
    return values


def base_env() -> dict[str, str]:
    """What every lab process gets: Spark on loopback, the venv first on PATH, the lab's endpoints."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if os.environ.get(k)}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        "SPARK_HOME": str(_spark_home()),
        "SPARK_CONF_DIR": str(spark_conf_dir()),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_HOSTNAME": HOST,
        "SPARK_PUBLIC_DNS": HOST,
        "PYSPARK_PYTHON": str(PYTHON),
        "PYSPARK_DRIVER_PYTHON": str(PYTHON),
        "KAFKA_BOOTSTRAP": f"{HOST}:{runner.KAFKA_PORT}",
        "CASSANDRA_HOST": HOST,
        "CASSANDRA_PORT": str(runner.CASSANDRA_PORT),
        "MLFLOW_TRACKING_URI": MLFLOW_URL,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def airflow_env() -> dict[str, str]:
    """compose/airflow/airflow.env plus the twin's values (paths, loopback URLs, secrets, connections)."""
    home = airflow_home()
    return {
        **base_env(),
        **read_env_file(AIRFLOW_SETTINGS),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "fraudlab.orchestration.SQLITE_CONNECT_ARGS",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
        "AIRFLOW__API__BASE_URL": AIRFLOW_URL,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{AIRFLOW_URL}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": read_secret("airflow_jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": read_secret("airflow_api_secret_key"),
        "AIRFLOW__CORE__FERNET_KEY": read_secret("airflow_fernet_key"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(secret_path("airflow_passwords.json")),
        # The scheduler's optional health server would listen on 0.0.0.0: keep it off.
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": f"spark://{HOST}", "port": SPARK_MASTER_PORT}),
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": f"{HOST}:{runner.KAFKA_PORT}"}}),
        "AIRFLOW_CONN_CASSANDRA_DEFAULT": json.dumps(
            {"conn_type": "cassandra", "host": HOST, "port": runner.CASSANDRA_PORT, "schema": runner.KEYSPACE}),
    }


def write_spark_conf() -> Path:
    """SPARK_CONF_DIR of the twin: compose/spark's files plus the standalone driver settings."""
    target = spark_conf_dir()
    target.mkdir(parents=True, exist_ok=True)
    for source in SPARK_CONF_SOURCE.iterdir():
        if source.is_file():
            shutil.copyfile(source, target / source.name)
    with open(target / "spark-defaults.conf", "a") as handle:
        handle.write(
            "\n# Added by services/lab.py for the standalone twin: executors on the worker reach the\n"
            "# driver (Airflow task, notebook) on loopback; executors fit the worker's memory.\n"
            f"spark.driver.host                 {HOST}\n"
            f"spark.driver.bindAddress          {HOST}\n"
            "spark.executor.memory             1g\n"
        )
    return target


# --------------------------------------------------------------------------------------------
# HTTP

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, token: str | None = None, body: Any = None,
         timeout: float = 10) -> tuple[int, Any]:
    """One request straight to 127.0.0.1; returns (status, decoded JSON or text). OSError if no answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            status, payload = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read().decode(errors="replace")
    try:
        return status, json.loads(payload)
    except json.JSONDecodeError:
        return status, payload


def airflow_token(password: str | None = None) -> str:
    """A JWT for the lab's admin user from the API server's /auth/token."""
    status, body = http("POST", f"{AIRFLOW_URL}/auth/token",
                        body={"username": AIRFLOW_USER, "password": password or read_secret("airflow_admin_password")})
    if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
        raise LabError(f"Airflow refused a token for {AIRFLOW_USER} (HTTP {status})")
    return body["access_token"]


# --------------------------------------------------------------------------------------------
# Readiness probes: None when ready, else why not


def _probe_spark_master() -> str | None:
    status, body = http("GET", f"{SPARK_MASTER_UI}/json/")
    if status != 200 or not isinstance(body, dict):
        return f"{SPARK_MASTER_UI}/json/ answered HTTP {status}"
    if body.get("status") != "ALIVE":
        return f"master status {body.get('status')}"
    return None


def _probe_spark_worker() -> str | None:
    status, body = http("GET", f"{SPARK_MASTER_UI}/json/")
    if status != 200 or not isinstance(body, dict):
        return "the master does not answer"
    alive = [w for w in body.get("workers", [])
             if w.get("state") == "ALIVE" and str(w.get("webuiaddress", "")).endswith(f":{SPARK_WORKER_UI_PORT}")]
    if not alive:
        return "the worker has not registered with the master yet"
    status, _ = http("GET", f"{SPARK_WORKER_UI}/json/")
    return None if status == 200 else f"worker UI answered HTTP {status}"


def _probe_mlflow() -> str | None:
    status, body = http("GET", f"{MLFLOW_URL}/health")
    return None if status == 200 else f"/health answered HTTP {status}"


def _probe_airflow() -> str | None:
    status, health = http("GET", f"{AIRFLOW_URL}/api/v2/monitor/health")
    if status != 200 or not isinstance(health, dict):
        return f"/api/v2/monitor/health answered HTTP {status}"
    unhealthy = [part for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                 if (health.get(part) or {}).get("status") != "healthy"]
    if unhealthy:
        return f"not healthy yet: {', '.join(unhealthy)}"
    token = airflow_token()
    status, dag = http("GET", f"{AIRFLOW_URL}/api/v2/dags/{READY_DAG}", token)
    if status == 200:
        return None
    status, errors = http("GET", f"{AIRFLOW_URL}/api/v2/importErrors", token)
    listed = [e.get("filename", "?") for e in errors.get("import_errors", [])] if isinstance(errors, dict) else []
    return f"DAG {READY_DAG} not parsed yet" + (f" (import errors in {', '.join(listed)})" if listed else "")


def _probe_jupyter() -> str | None:
    status, _ = http("GET", f"{JUPYTER_URL}/api/status?token={read_secret('jupyter_token')}")
    return None if status == 200 else f"/api/status answered HTTP {status}"


def _probe_port(port: int) -> Callable[[], str | None]:
    return lambda: None if runner._port_open(port) else f"nothing listens on {HOST}:{port}"


# --------------------------------------------------------------------------------------------
# The processes


@dataclass(frozen=True)
class Service:
    name: str
    ports: tuple[int, ...]  # must be free before start; all bound to 127.0.0.1
    url: str
    command: Callable[[], list[str]]
    env: Callable[[], dict[str, str]]
    #: Readiness probe: None when ready. Airflow's processes share the API server's probe.
    probe: Callable[[], str | None] | None = None
    cwd: Callable[[], Path] = lambda: STATE_DIR


def _spark_class() -> str:
    return str(_spark_home() / "bin" / "spark-class")


def _spark_daemon_env() -> dict[str, str]:
    # The master's REST submission server (port 6066, no authentication) stays off, as in compose.
    return {**base_env(), "SPARK_DAEMON_MEMORY": "512m", "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}


def _airflow(*args: str) -> Callable[[], list[str]]:
    return lambda: [str(VENV_BIN / "airflow"), *args]


def _jupyter_env() -> dict[str, str]:
    return {**base_env(), "JUPYTER_TOKEN": read_secret("jupyter_token"),
            "JUPYTER_RUNTIME_DIR": str(STATE_DIR / "jupyter" / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(STATE_DIR / "jupyter" / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(STATE_DIR / "jupyter" / "workspaces")}


def write_jupyter_settings() -> None:
    """JupyterLab user settings of the twin: no news or update checks (no calls to the internet)."""
    target = STATE_DIR / "jupyter" / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}, indent=2) + "\n")


SERVICES: tuple[Service, ...] = (
    Service(
        "spark-master", (SPARK_MASTER_PORT, SPARK_MASTER_UI_PORT), SPARK_MASTER_UI,
        lambda: [_spark_class(), "org.apache.spark.deploy.master.Master", "--host", HOST,
                 "--port", str(SPARK_MASTER_PORT), "--webui-port", str(SPARK_MASTER_UI_PORT)],
        _spark_daemon_env, _probe_spark_master,
    ),
    Service(
        "spark-worker", (SPARK_WORKER_UI_PORT,), SPARK_WORKER_UI,
        lambda: [_spark_class(), "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                 "--webui-port", str(SPARK_WORKER_UI_PORT), "--cores", WORKER_CORES, "--memory", WORKER_MEMORY,
                 "--work-dir", str(STATE_DIR / "spark" / "work"), SPARK_MASTER_URL],
        _spark_daemon_env, _probe_spark_worker,
    ),
    Service(
        "mlflow", (MLFLOW_PORT,), MLFLOW_URL,
        lambda: [str(VENV_BIN / "mlflow"), "server",
                 "--backend-store-uri", f"sqlite:///{STATE_DIR / 'mlflow' / 'mlflow.db'}",
                 "--artifacts-destination", str(STATE_DIR / "mlflow" / "artifacts"), "--serve-artifacts",
                 "--host", HOST, "--port", str(MLFLOW_PORT), "--workers", "1"],
        base_env, _probe_mlflow,
    ),
    Service("airflow-dag-processor", (), AIRFLOW_URL, _airflow("dag-processor"), airflow_env),
    Service("airflow-scheduler", (), AIRFLOW_URL, _airflow("scheduler", "--skip-serve-logs"), airflow_env),
    Service("airflow-triggerer", (), AIRFLOW_URL, _airflow("triggerer", "--skip-serve-logs"), airflow_env),
    Service(
        "airflow-api-server", (AIRFLOW_PORT,), AIRFLOW_URL,
        _airflow("api-server", "--host", HOST, "--port", str(AIRFLOW_PORT)), airflow_env, _probe_airflow,
    ),
    Service(
        "jupyter", (JUPYTER_PORT,), f"{JUPYTER_URL}/lab",
        lambda: [str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--ServerApp.ip={HOST}",
                 f"--ServerApp.port={JUPYTER_PORT}", "--ServerApp.port_retries=0",
                 f"--ServerApp.root_dir={NOTEBOOKS_DIR}",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                 "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
                 *(["--allow-root"] if os.geteuid() == 0 else [])],
        _jupyter_env, _probe_jupyter, cwd=lambda: NOTEBOOKS_DIR,
    ),
)
BY_NAME = {s.name: s for s in SERVICES}
#: Every port the twin listens on (Kafka's controller and Cassandra's storage port included).
def lab_ports() -> dict[int, str]:
    ports = {p: s.name for s in SERVICES for p in s.ports}
    ports.update({runner.KAFKA_PORT: "kafka", runner.KAFKA_CONTROLLER_PORT: "kafka",
                  runner.CASSANDRA_PORT: "cassandra", runner.CASSANDRA_STORAGE_PORT: "cassandra"})
    return ports


# --------------------------------------------------------------------------------------------
# Pids: "pid start-time" files (services.supervisor), so that a recycled pid is never taken for ours


def running_pid(name: str) -> int | None:
    """The pid of the lab's process `name` if it is alive (a stale pid file is removed)."""
    return supervisor.running_pid(pids_dir() / f"{name}.pid")


def _spawn(service: Service) -> int:
    return supervisor.spawn(service.command(), pids_dir() / f"{service.name}.pid", log_path(service.name),
                            cwd=service.cwd(), env=service.env(),
                            header=f"services.lab: starting {service.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}")


def _stop_groups(pids: dict[str, int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each process group, wait for the groups to empty, SIGKILL what is left."""
    supervisor.stop_groups(pids, timeout)
    for name in pids:
        (pids_dir() / f"{name}.pid").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# up / down / status


def _airflow_migrate() -> None:
    """``airflow db migrate`` once per Airflow version (a stamp in AIRFLOW_HOME records it)."""
    from importlib.metadata import version

    stamp = airflow_home() / ".migrated"
    wanted = version("apache-airflow")
    if stamp.is_file() and stamp.read_text().strip() == wanted and (airflow_home() / "airflow.db").is_file():
        return
    log.info("airflow: migrating the metadata DB %s", airflow_home() / "airflow.db")
    done = subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=airflow_env(), cwd=airflow_home(),
                          capture_output=True, text=True, timeout=900)
    log_path("airflow-db-migrate").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise LabError(f"`airflow db migrate` failed with exit code {done.returncode}",
                       runner.tail(log_path("airflow-db-migrate")))
    stamp.write_text(wanted + "\n")


def _check_ports(to_start: list[Service], runner_to_start: list[str]) -> None:
    busy = [(p, s.name) for s in to_start for p in s.ports if runner._port_open(p)]
    for name in runner_to_start:
        ports = [runner.KAFKA_PORT, runner.KAFKA_CONTROLLER_PORT] if name == "kafka" else \
            [runner.CASSANDRA_PORT, runner.CASSANDRA_STORAGE_PORT]
        busy += [(p, name) for p in ports if runner._port_open(p)]
    if busy:
        port, name = busy[0]
        owner = supervisor.port_owner(port)
        raise LabError(
            f"cannot start {name}: {HOST}:{port} is already taken by another process"
            f"{' (' + owner + ')' if owner else ''}; stop it (or `make lab-down` if it is a lab "
            f"started from another state folder) and run `make lab-up` again"
        )


def up(timeout: float = READY_TIMEOUT, with_runner: bool = True) -> dict[str, float]:
    """Start what is not running, wait until everything answers; returns seconds to ready by service."""
    if not PYTHON.exists():
        raise LabError("no .venv/bin/python: run `make setup` first")
    t0 = time.monotonic()
    with _lock():
        for folder in (logs_dir(), pids_dir(), airflow_home(), STATE_DIR / "mlflow" / "artifacts",
                       STATE_DIR / "spark" / "work", STATE_DIR / "jupyter" / "runtime"):
            folder.mkdir(parents=True, exist_ok=True)
        ensure_secrets()
        to_start = [s for s in SERVICES if running_pid(s.name) is None]
        for s in SERVICES:
            if s not in to_start:
                log.info("%s: already running (pid %d)", s.name, running_pid(s.name))
        runner_before = {n: runner.running_pid(n) for n in RUNNER_SERVICES}
        runner_to_start = [n for n, pid in runner_before.items() if pid is None] if with_runner else []
        for name in RUNNER_SERVICES:
            if with_runner and name not in runner_to_start:
                log.info("%s: already running (pid %d), used as it is; `lab down` leaves it running unless "
                         "the lab started it", name, runner.running_pid(name))
        _check_ports(to_start, runner_to_start)
        write_spark_conf()
        write_jupyter_settings()
        started: dict[str, int] = {}
        ready: dict[str, float] = {}
        try:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            runner_future = None
            if with_runner:
                # Kafka and Cassandra start (or are checked) beside the other services.
                runner_future = pool.submit(runner.up, list(RUNNER_SERVICES))
            for s in to_start:
                if s.name.startswith("airflow-"):
                    continue
                started[s.name] = _spawn(s)
                log.info("%s: started pid %d, log %s", s.name, started[s.name], log_path(s.name))
            if any(s.name.startswith("airflow-") for s in to_start):
                _airflow_migrate()
            for s in to_start:
                if s.name.startswith("airflow-"):
                    started[s.name] = _spawn(s)
                    log.info("%s: started pid %d, log %s", s.name, started[s.name], log_path(s.name))
            if runner_future is not None:
                try:
                    runner_future.result()
                except runner.ServiceError as exc:
                    raise LabError(str(exc), exc.detail) from exc
                finally:
                    pool.shutdown()
                ready["kafka+cassandra"] = time.monotonic() - t0
                # Started by this call: running now under a pid that did not run before (the check
                # before the start can race with a test session that stops its own Kafka meanwhile).
                by_this_call = [n for n in RUNNER_SERVICES if runner.running_pid(n) not in (None, runner_before[n])]
                _record_runner_started(_runner_started_by_lab() + by_this_call)
            _wait_ready(t0, timeout, ready)
        except BaseException:
            if started:
                log.error("lab: stopping what this call started")
                _stop_groups({n: p for n, p in started.items() if running_pid(n) == p})
            leftover = [n for n in RUNNER_SERVICES if runner.running_pid(n) not in (None, runner_before[n])]
            if with_runner and leftover:
                runner.down(leftover)
                _record_runner_started([n for n in _runner_started_by_lab() if n not in leftover])
            raise
    return ready


def _wait_ready(t0: float, timeout: float, ready: dict[str, float]) -> None:
    pending = [s for s in SERVICES if s.probe is not None]
    reasons: dict[str, str] = {}
    while pending:
        for s in list(pending):
            # Every process the probe depends on must still run.
            group = [x for x in SERVICES if x.name == s.name or (s.name == "airflow-api-server"
                                                                 and x.name.startswith("airflow-"))]
            for member in group:
                if running_pid(member.name) is None:
                    raise LabError(f"{member.name} exited before the lab became ready",
                                   runner.tail(log_path(member.name)))
            try:
                reason = s.probe()
            except (OSError, LabError) as exc:
                reason = str(exc) or type(exc).__name__
            if reason is None:
                ready[s.name] = time.monotonic() - t0
                log.info("%s: ready after %.0f s", s.name, ready[s.name])
                pending.remove(s)
            else:
                reasons[s.name] = reason
        if not pending:
            break
        if time.monotonic() - t0 > timeout:
            s = pending[0]
            raise LabError(f"{s.name} did not become ready within {timeout:.0f} s: {reasons.get(s.name)}",
                           runner.tail(log_path(s.name)))
        time.sleep(2)


def down(with_runner: bool = True) -> None:
    """Stop the lab's processes by pid, then Kafka/Cassandra if (and only if) the lab started them."""
    with _lock():
        pids = {s.name: pid for s in reversed(SERVICES) if (pid := running_pid(s.name)) is not None}
        for s in SERVICES:
            if s.name not in pids:
                log.info("%s: not running", s.name)
        if pids:
            _stop_groups(pids)
        if with_runner:
            ours = _runner_started_by_lab()
            if ours:
                try:
                    runner.down(ours)
                except runner.ServiceError as exc:
                    raise LabError(str(exc), exc.detail) from exc
            for name in RUNNER_SERVICES:
                if name not in ours and runner.running_pid(name) is not None:
                    log.info("%s: left running (the lab did not start it)", name)
            _record_runner_started([])


@dataclass(frozen=True)
class Row:
    name: str
    state: str
    pid: int | None
    url: str
    detail: str = ""


def status() -> list[Row]:
    rows = []
    for s in SERVICES:
        pid = running_pid(s.name)
        if pid is None:
            rows.append(Row(s.name, "stopped", None, s.url))
            continue
        probe = s.probe or _probe_airflow
        try:
            reason = probe()
        except (OSError, LabError) as exc:
            reason = str(exc) or type(exc).__name__
        listening = ", ".join(f"{h}:{p}" for h, p in supervisor.group_listeners(pid))
        rows.append(Row(s.name, "running" if reason is None else "starting", pid, s.url,
                        reason or (f"listening {listening}" if listening else "")))
    for name, st in runner.status(list(RUNNER_SERVICES)).items():
        url = f"{HOST}:{runner.KAFKA_PORT}" if name == "kafka" else f"{HOST}:{runner.CASSANDRA_PORT}"
        owner = "started by the lab" if name in _runner_started_by_lab() else "not started by the lab"
        rows.append(Row(name, st.state, st.pid, url, owner if st.pid else ""))
    return rows


def urls_table() -> str:
    lines = [
        f"  Spark master      {SPARK_MASTER_UI}   (cluster {SPARK_MASTER_URL})",
        f"  Spark worker      {SPARK_WORKER_UI}",
        f"  Kafka             {HOST}:{runner.KAFKA_PORT}",
        f"  Cassandra         {HOST}:{runner.CASSANDRA_PORT}   (keyspace {runner.KEYSPACE})",
        f"  MLflow            {MLFLOW_URL}",
        f"  Airflow           {AIRFLOW_URL}   user {AIRFLOW_USER}, password in "
        f"{secret_path('airflow_admin_password')}",
        f"  JupyterLab        {JUPYTER_URL}/lab?token=<token>   token in {secret_path('jupyter_token')}",
        f"  logs              {logs_dir()}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.lab",
        description="Start, stop and check the Docker-free twin of the compose lab (all on 127.0.0.1).",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    supervisor.cli_logging()
    try:
        if args.command == "up":
            started = time.monotonic()
            up()
            print(f"\nlab: up in {time.monotonic() - started:.0f} s (state in {STATE_DIR})")
            print(urls_table())
        elif args.command == "down":
            down()
            print("lab: down")
        else:
            rows = status()
            for row in rows:
                pid = f"pid {row.pid}" if row.pid else ""
                print(f"{row.name:<22} {row.state:<9} {pid:<11} {row.url:<28} {row.detail}")
            return 0 if all(r.state == "running" for r in rows) else 3
    except (LabError, runner.ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "detail", ""):
            print(exc.detail, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
