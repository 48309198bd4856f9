"""The Docker-free twin end to end: `python -m services.lab up`, a real batch run, real pages, `down`.

One module-scoped lab, with its own state folder (LAB_STATE_DIR in pytest's temp folder, so the
first `up` is tested: secrets generated, Airflow's DB migrated) on the lab's fixed ports:

* `up` brings Spark master + worker, MLflow, Airflow (API server, scheduler, DAG processor,
  triggerer) and JupyterLab up on 127.0.0.1, with Kafka and Cassandra from services.runner (used
  as they are when something else already runs them); a second `up` is a no-op; a second lab
  from another state folder stops at the first taken port with one sentence.
* Airflow's REST API v2 (JWT from /auth/token with the generated password) lists the four DAGs,
  whose Spark and MLflow connections point at the twin; `prepare_data` and `fit_model` run by
  spark-submit on the twin's standalone master on 3,000 generated rows with a lenient gate, and
  the model must be registered in the MLflow server (proxied artifacts, `champion` alias) and the
  master must list both apps as finished. (Triggering `fraud_batch_local` on a standalone cluster
  is tested once, in the compose stack: tests/compose/test_airflow.py.)
* Debian's `chromium` (headless) loads the Spark master, Airflow, MLflow and Jupyter pages; the
  rendered DOM must show what each page is about. Screenshots and DOMs are kept in
  tests/artifacts/lab/ (git-ignored).
* `down` stops everything the lab started and every port is free again.

Run: .venv/bin/python -m pytest -q tests/lab -s   (about 4-6 minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from services import lab, runner, supervisor

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "lab"
ROWS = 3_000
#: Thresholds a 3,000-row data set passes (the full-size defaults need more data).
LENIENT_GATE = {"min_average_precision": 0.05, "min_roc_auc": 0.5, "min_recall": 0.05}
UP_TIMEOUT_S = 15 * 60
RUN_TIMEOUT_S = 20 * 60
APPS = ("prepare_data", "fit_model")
TIMINGS: dict[str, float] = {}


def lab_cli(command: str, state: Path, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`python -m services.lab <command>` with an explicit, minimal environment (never the test's)."""
    env = {k: os.environ[k] for k in ("HOME", "LANG", "JAVA_HOME", "TMPDIR") if os.environ.get(k)}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                "LAB_STATE_DIR": str(state), "LAB_READY_TIMEOUT": str(UP_TIMEOUT_S - 60)})
    return subprocess.run([sys.executable, "-m", "services.lab", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def logs_hint(state: Path) -> str:
    return f"logs: {state / 'logs'} and Airflow task logs under {state / 'airflow' / 'logs'}"


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lab-state")
    saved = lab.STATE_DIR
    lab.STATE_DIR = path  # the module's helpers (pids, secrets) read this folder
    yield path
    lab.STATE_DIR = saved


@pytest.fixture(scope="module")
def twin(state):
    """The lab, up; stopped at the end of the module whatever happened."""
    taken = {port: name for port, name in lab.lab_ports().items()
             if name not in runner.SERVICES and runner._port_open(port)}
    if taken:
        port, name = next(iter(taken.items()))
        pytest.fail(f"{lab.HOST}:{port} ({name}) is already taken, probably by a lab started with "
                    f"`make lab-up`: stop it with `make lab-down` before running this test", pytrace=False)
    before = {name: runner.running_pid(name) for name in runner.SERVICES}
    started = time.perf_counter()
    proc = lab_cli("up", state)
    TIMINGS["lab up (cold: new state folder)"] = time.perf_counter() - started
    print(proc.stdout[-4000:])
    try:
        assert proc.returncode == 0, f"lab up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        yield {"state": state, "runner_before": before, "up": proc}
    finally:
        down = lab_cli("down", state, timeout=600)
        print(down.stdout[-2000:], down.stderr[-2000:])
        print("\n".join(f"timing: {k}: {v:.0f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def token(twin) -> str:
    password = (twin["state"] / "secrets" / "airflow_admin_password").read_text().strip()
    return lab.airflow_token(password)


@pytest.fixture(scope="module")
def banksim_csv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab-raw") / "transactions.csv"
    proc = subprocess.run([sys.executable, str(REPO / "spark-apps" / "generate_transactions.py"), "--rows",
                           str(ROWS), "--seed", "11", "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def registered_versions(name: str) -> list[dict]:
    status, body = lab.http("GET", f"{lab.MLFLOW_URL}/api/2.0/mlflow/model-versions/search?"
                            + urllib.parse.urlencode({"filter": f"name='{name}'"}))
    assert status == 200, body
    return body.get("model_versions", [])


@pytest.fixture(scope="module")
def cluster_run(twin, banksim_csv, tmp_path_factory):
    """prepare_data and fit_model through spark-submit on the twin's master, registering in its MLflow.

    (The DAG itself, triggered over REST on a standalone cluster, runs in tests/compose/, in the
    containerised Airflow; here the twin's own wiring is what is checked.)
    """
    from fraudlab import config

    data_root = tmp_path_factory.mktemp("lab-data")
    versions_before = {v["version"] for v in registered_versions(config.MODEL_NAME)}
    started = time.perf_counter()
    for app, args in (
        ("prepare_data.py", ["--input", str(banksim_csv), "--output", str(data_root / "prepared"),
                             "--quarantine", str(data_root / "quarantine")]),
        ("fit_model.py", ["--input", str(data_root / "prepared"), "--model-dir", str(data_root / "model"),
                          "--search", "smoke", "--tracking-uri", lab.MLFLOW_URL,
                          *[f"--gate={k}={v}" for k, v in LENIENT_GATE.items()]]),
    ):
        done = subprocess.run([str(Path(sys.executable).parent / "spark-submit"), "--master", lab.SPARK_MASTER_URL,
                               str(REPO / "spark-apps" / app), *args], cwd=REPO, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, env={**os.environ, "SPARK_CONF_DIR": str(lab.spark_conf_dir())})
        assert done.returncode == 0, f"{app} on {lab.SPARK_MASTER_URL}:\n{done.stderr[-4000:]}"
    TIMINGS[f"prepare_data + fit_model on {lab.SPARK_MASTER_URL}"] = time.perf_counter() - started
    return {"data_root": data_root, "versions_before": versions_before, "model": config.MODEL_NAME}


# ------------------------------------------------------------------------------------------ up


def test_every_service_is_ready_and_on_loopback_only(twin):
    proc = lab_cli("status", twin["state"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for service in lab.SERVICES:
        pid = lab.running_pid(service.name)
        assert pid, f"{service.name} has no live pid file"
        listening = supervisor.group_listeners(pid)
        assert all(host == lab.HOST for host, _ in listening), f"{service.name} listens on {listening}"
        assert {p for _, p in listening} >= set(service.ports), f"{service.name}: {listening}"
        # No Airflow log server (8793/8794 would bind every interface) and no Spark REST server.
        assert not {8793, 8794, 6066} & {p for _, p in listening}, f"{service.name}: {listening}"
    out = twin["up"].stdout  # the URL table at the end of `up`
    for url in (lab.SPARK_MASTER_UI, lab.SPARK_WORKER_UI, lab.MLFLOW_URL, lab.AIRFLOW_URL, lab.JUPYTER_URL):
        assert url in out


def test_secrets_are_generated_into_the_state_folder_only(twin):
    folder = twin["state"] / "secrets"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for name in ("airflow_admin_password", "airflow_jwt_secret", "jupyter_token"):
        path = folder / name
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert len(path.read_text().strip()) >= 20
    password = (folder / "airflow_admin_password").read_text().strip()
    assert password not in twin["up"].stdout


def test_second_up_is_a_no_op(twin):
    pids = {s.name: lab.running_pid(s.name) for s in lab.SERVICES}
    proc = lab_cli("up", twin["state"], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already running" in proc.stdout
    assert {s.name: lab.running_pid(s.name) for s in lab.SERVICES} == pids


def test_a_taken_port_stops_up_with_one_sentence(twin, tmp_path):
    proc = lab_cli("up", tmp_path / "other-state", timeout=300)
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert re.match(r"error: cannot start spark-master: 127\.0\.0\.1:\d+ is already taken by another process", first), \
        proc.stderr
    assert f"pid {lab.running_pid('spark-master')}" in first
    assert not (tmp_path / "other-state" / "pids").exists() or not list((tmp_path / "other-state" / "pids").iterdir())


def test_airflow_needs_the_generated_password(twin):
    status, _ = lab.http("POST", f"{lab.AIRFLOW_URL}/auth/token", body={"username": "admin", "password": "admin"})
    assert status == 401
    status, _ = lab.http("GET", f"{lab.AIRFLOW_URL}/api/v2/dags")
    assert status == 401


def test_jupyter_needs_the_token(twin):
    status, _ = lab.http("GET", f"{lab.JUPYTER_URL}/api/contents")
    assert status in (401, 403)
    token = (twin["state"] / "secrets" / "jupyter_token").read_text().strip()
    status, body = lab.http("GET", f"{lab.JUPYTER_URL}/api/contents?token={token}")
    assert status == 200
    names = {item["name"] for item in body["content"]}
    assert {"01_explore_transactions.ipynb", "02_model_analysis.ipynb", "03_streaming_inspection.ipynb"} <= names


# ---------------------------------------------------------------------------------- cluster run


def test_airflow_has_the_dags_and_points_them_at_the_twin(twin, token):
    for dag in ("fraud_batch_local", "fraud_batch_emr", "fraud_monthly_report", "fraud_streaming"):
        status, body = lab.http("GET", f"{lab.AIRFLOW_URL}/api/v2/dags/{dag}", token)
        assert status == 200 and not body.get("has_import_errors"), (dag, body)
    env = lab.airflow_env()
    spark = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert f"{spark['host']}:{spark['port']}" == lab.SPARK_MASTER_URL
    assert env["MLFLOW_TRACKING_URI"] == lab.MLFLOW_URL


def test_model_is_registered_in_the_mlflow_server(cluster_run):
    status, body = lab.http("GET", f"{lab.MLFLOW_URL}/api/2.0/mlflow/registered-models/get?name={cluster_run['model']}")
    assert status == 200, body
    new = [v for v in registered_versions(cluster_run["model"]) if v["version"] not in cluster_run["versions_before"]]
    assert len(new) == 1, new
    status, run = lab.http("GET", f"{lab.MLFLOW_URL}/api/2.0/mlflow/runs/get?run_id={new[0]['run_id']}")
    assert status == 200 and run["run"]["info"]["status"] == "FINISHED", run
    # Artifacts go through the server (proxied), never to a client-side path.
    assert run["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:"), run["run"]["info"]
    status, alias = lab.http("GET", f"{lab.MLFLOW_URL}/api/2.0/mlflow/registered-models/alias?"
                             + urllib.parse.urlencode({"name": cluster_run["model"], "alias": "champion"}))
    assert status == 200 and alias["model_version"]["version"] == new[0]["version"], alias


def test_spark_master_ran_the_apps(cluster_run):
    status, master = lab.http("GET", f"{lab.SPARK_MASTER_UI}/json/")
    assert status == 200
    finished = [app["name"] for app in master["completedapps"] if app["state"] == "FINISHED"]
    for app in APPS:
        assert app in finished, master["completedapps"]
    assert master["aliveworkers"] == 1 and master["workers"][0]["cores"] == 2


# ------------------------------------------------------------------------------------ browser


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make chromium` (Debian's chromium package)", pytrace=False)
    profile = ARTIFACTS / ".chromium-profile"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,900", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


PAGES = {
    # name: (url, virtual time budget ms, strings the rendered page must show)
    "spark-master": (lab.SPARK_MASTER_UI + "/", 5_000, ["spark://127.0.0.1:7077", "ALIVE", "fit_model"]),
    "airflow": (lab.AIRFLOW_URL + "/", 20_000, ["Sign into Airflow", "Username", "Password"]),
    "mlflow": (lab.MLFLOW_URL + "/#/models", 20_000, ["Registered Models", "fraudlab_fraud_classifier"]),
    "jupyter": (lab.JUPYTER_URL + "/lab?token={token}", 40_000,
                ["01_explore_transactions.ipynb", "02_model_analysis.ipynb", "03_streaming_inspection.ipynb"]),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_chromium(page, cluster_run, twin):
    url, budget, wanted = PAGES[page]
    url = url.format(token=(twin["state"] / "secrets" / "jupyter_token").read_text().strip())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    budget_arg = f"--virtual-time-budget={budget}"
    dom = chromium(budget_arg, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    (ARTIFACTS / f"{page}.html").write_text(dom.stdout)
    text = visible_text(dom.stdout)
    missing = [w for w in wanted if w not in text]
    assert not missing, f"{page}: {missing} not rendered; DOM in {ARTIFACTS / (page + '.html')}"
    shot = ARTIFACTS / f"{page}.png"
    shot.unlink(missing_ok=True)
    proc = chromium(budget_arg, f"--screenshot={shot}", url)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"  {page}: screenshot {shot}")


# ------------------------------------------------------------------------------------------ down


def test_down_stops_everything_it_started(twin):
    # Last test of the module: the fixture's own `down` afterwards is then a no-op.
    proc = lab_cli("down", twin["state"], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((twin["state"] / "pids").glob("*.pid"))
    busy = [p for p, name in lab.lab_ports().items() if name not in runner.SERVICES and runner._port_open(p)]
    assert not busy, f"ports still taken after down: {busy}"
    for name in runner.SERVICES:
        if twin["runner_before"][name] is None:
            assert runner.running_pid(name) is None, f"{name} was started by the lab and still runs"
        else:
            assert runner.running_pid(name) == twin["runner_before"][name], f"{name} was not the lab's to stop"
    if all(twin["runner_before"][n] is None for n in runner.SERVICES):
        busy = [p for p in lab.lab_ports() if runner._port_open(p)]
        assert not busy, f"ports still taken after down: {busy}"
