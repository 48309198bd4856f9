"""The Airflow test harness: a throwaway AIRFLOW_HOME, one migrated SQLite DB, the DAGs, the services.

Airflow reads its configuration when it is first imported, so the environment is
set here, at import time, before any test module imports Airflow: AIRFLOW_HOME
is a new temp folder, the DAGs folder is the repository's ``dags/``, the
small-machine settings come from ``compose/airflow/airflow.env`` (the file the
compose stack loads), and Spark runs on ``local[2]``. Spark's own environment
(SPARK_HOME, SPARK_CONF_DIR, SPARK_LOCAL_IP, PYSPARK_PYTHON, the venv on PATH)
comes from ``tests/conftest.py``.

Fixtures:

- ``airflow_db``: ``airflow db migrate`` once per session;
- ``dagbag``: the DAG folder parsed once per session;
- ``banksim_csv``: 3,000 transactions written by ``generate_transactions.py``;
- ``batch_local_run``: one real run of ``fraud_batch_local`` (``dag.test()``)
  that later tests build on;
- ``run_dag``: ``dag.test()`` with the run's wall time recorded;
- ``airflow_services``: a context manager that starts the DAG processor, the
  scheduler and the API server on 127.0.0.1 as subprocesses and stops every
  process it started;
- ``api``: a small JSON-over-HTTP client for the REST API.

Wall times of the DAG runs are printed at the end of the session.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.lab import http

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
SPARK_APPS = REPO / "spark-apps"
SETTINGS_FILE = REPO / "compose" / "airflow" / "airflow.env"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")

#: The API user of the simple auth manager in these tests.
API_USER = "fraudlab"
API_PASSWORD = "fraudlab-test-password"

#: Gate thresholds a 3,000-row data set passes (the full-size defaults need more data);
#: the gate itself is tested with an impossible threshold.
LENIENT_GATE = {"min_average_precision": 0.05, "min_roc_auc": 0.5, "min_recall": 0.05}
ROWS = 3_000
#: Every DAG of dags/ (one per file, dag_id = file name): the API server is ready when it lists them all.
DAG_IDS = {path.stem for path in DAGS_DIR.glob("*.py")}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of ``path``; blank lines and ``#`` comments skipped, values taken as they are."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        settings[key.strip()] = value
    return settings


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if "airflow" in sys.modules:
    raise RuntimeError(
        "Airflow was imported before tests/airflow/conftest.py could point AIRFLOW_HOME at a temp folder; "
        "import Airflow only inside tests/airflow"
    )

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fraudlab-airflow-"))
AIRFLOW_ENV = {
    **read_env_file(SETTINGS_FILE),
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "fraudlab.orchestration.SQLITE_CONNECT_ARGS",
    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{API_USER}:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(AIRFLOW_HOME / "passwords.json"),
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
}
os.environ.update(AIRFLOW_ENV)
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
(AIRFLOW_HOME / "passwords.json").write_text(json.dumps({API_USER: API_PASSWORD}) + "\n")

#: Wall times of the DAG runs, printed at the end of the session.
TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("Airflow DAG run wall times")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.0f} s")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata DB, migrated once: ``airflow db migrate`` on a fresh SQLite file."""
    proc = subprocess.run([AIRFLOW, "db", "migrate"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return AIRFLOW_HOME / "airflow.db"


@pytest.fixture(scope="session")
def dagbag():
    """The DAGs folder, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="package", autouse=True)
def lab_data_root(tmp_path_factory):
    """``FRAUDLAB_DATA`` while this package runs: pytest's base temp folder, which holds every test's data
    root and input, because the local DAGs refuse a path param outside the lab's data root. Set before
    any Airflow process of these tests starts (they inherit it), restored after the package."""
    saved = os.environ.get("FRAUDLAB_DATA")
    os.environ["FRAUDLAB_DATA"] = str(tmp_path_factory.getbasetemp())
    yield tmp_path_factory.getbasetemp()
    if saved is None:
        os.environ.pop("FRAUDLAB_DATA", None)
    else:
        os.environ["FRAUDLAB_DATA"] = saved


@pytest.fixture(scope="package")
def banksim_csv(tmp_path_factory) -> Path:
    """3,000 BankSim-shaped transactions, written by the generator app (plain Python, no Spark needed)."""
    out = tmp_path_factory.mktemp("raw") / "transactions.csv"
    proc = subprocess.run(
        [sys.executable, str(SPARK_APPS / "generate_transactions.py"), "--rows", str(ROWS), "--seed", "7",
         "--output", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@dataclass
class DagTestRun:
    """What one ``dag.test()`` run left behind."""

    run_id: str
    state: str
    states: dict[str, str]
    seconds: float
    data_root: Path | None = None
    tracking_uri: str | None = None
    conf: dict = field(default_factory=dict)


def run_dag_test(dag, conf: dict, label: str) -> DagTestRun:
    """Run ``dag`` once with ``dag.test(run_conf=conf)``; task states keyed ``task_id`` or ``task_id[i]``."""
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf)
    seconds = time.perf_counter() - started
    TIMINGS[label] = seconds
    states = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = str(getattr(ti.state, "value", ti.state))
    state = str(getattr(dag_run.state, "value", dag_run.state))
    return DagTestRun(run_id=dag_run.run_id, state=state, states=states, seconds=seconds, conf=conf)


@pytest.fixture(scope="package")
def batch_local_run(airflow_db, dagbag, banksim_csv, tmp_path_factory) -> DagTestRun:
    """``fraud_batch_local`` run for real on local[2], with its own data root and MLflow store."""
    data_root = tmp_path_factory.mktemp("batch-data")
    tracking_uri = f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}"
    conf = {"data_root": str(data_root), "input_path": str(banksim_csv), "mlflow_tracking_uri": tracking_uri,
            "search": "smoke", **LENIENT_GATE}
    run = run_dag_test(dagbag.dags["fraud_batch_local"], conf, "fraud_batch_local (dag.test, gate passes)")
    run.data_root = data_root
    run.tracking_uri = tracking_uri
    return run


def http_json(method: str, url: str, token: str | None = None, body: Any = None,
              timeout: float = 30) -> tuple[int, Any]:
    """One HTTP request with a JSON body straight to 127.0.0.1; (status, decoded JSON or text)."""
    return http(method, url, token=token, body=body, timeout=timeout)


@dataclass
class AirflowServices:
    """The running DAG processor, scheduler and API server."""

    base_url: str
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen]

    def token(self) -> str:
        status, body = http_json("POST", f"{self.base_url}/auth/token",
                                 body={"username": API_USER, "password": API_PASSWORD})
        assert status in (200, 201), body
        return body["access_token"]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``airflow <args>`` with the services' environment."""
        return subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                         for path in sorted(self.logs.glob("*.log")))

    def check_alive(self) -> None:
        dead = {name: proc.returncode for name, proc in self.processes.items() if proc.poll() is not None}
        assert not dead, f"Airflow processes exited: {dead}\n{self.log_tail()}"


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each started process group (the process and what it forked), SIGKILL what outlives 30 s."""
    for proc in processes.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in processes.values():
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for proc in processes.values():
        # Forked workers may have outlived their parent: end the rest of each group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def start_airflow(logs: Path, extra_env: dict[str, str] | None = None, timeout: float = 240):
    """Run ``airflow dag-processor``, ``airflow scheduler`` and ``airflow api-server`` on 127.0.0.1.

    The scheduler runs without its log server (task logs are read from the logs folder) and with
    ``use_job_schedule`` off, so unpausing a DAG only runs what a test triggers or backfills, never
    catchup runs of its own. Yields :class:`AirflowServices` once the API answers, the scheduler and
    the DAG processor report healthy and the DAGs are in the metadata DB; stops them all afterwards.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        **(extra_env or {}),
    }
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "dag-processor": [AIRFLOW, "dag-processor"],
        "scheduler": [AIRFLOW, "scheduler", "--skip-serve-logs"],
        "api-server": [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)],
    }
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in commands.items():
            out = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
            processes[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True, cwd=AIRFLOW_HOME)
        services = AirflowServices(base_url=base_url, env=env, logs=logs, processes=processes)
        deadline = time.monotonic() + timeout
        while True:
            services.check_alive()
            with contextlib.suppress(OSError):
                status, health = http_json("GET", f"{base_url}/api/v2/monitor/health", timeout=5)
                if status == 200 and all(health.get(part, {}).get("status") == "healthy"
                                         for part in ("metadatabase", "scheduler", "dag_processor")):
                    status, dags = http_json("GET", f"{base_url}/api/v2/dags?limit=100", token=services.token())
                    if status == 200 and DAG_IDS <= {d["dag_id"] for d in dags["dags"]}:
                        break
            assert time.monotonic() < deadline, f"Airflow not ready after {timeout} s\n{services.log_tail()}"
            time.sleep(2)
        yield services
    finally:
        _stop(processes)


@pytest.fixture(scope="session")
def run_dag():
    """:func:`run_dag_test`: one ``dag.test()`` run, timed."""
    return run_dag_test


@pytest.fixture(scope="session")
def airflow_services():
    """:func:`start_airflow`: ``with airflow_services(logs_dir) as services: ...``."""
    return start_airflow


@pytest.fixture(scope="session")
def api():
    """:func:`http_json`: ``status, body = api("GET", url, token)``."""
    return http_json


@pytest.fixture(scope="session")
def lenient_gate() -> dict[str, float]:
    """Gate thresholds a 3,000-row data set passes."""
    return dict(LENIENT_GATE)


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Wall times to print at the end of the session, by label."""
    return TIMINGS
