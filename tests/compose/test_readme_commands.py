"""The README's `docker exec ... spark-submit` commands, read from the README and run as written.

Generate, prepare and fit on the standalone cluster (spark://spark-master:7077, two workers),
then: the data and the model are where the README says, rows in = rows out + rows quarantined,
both workers ran executors, and the model is registered in the stack's MLflow with the
`champion` alias (MLflow's page is screenshot).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from tests.compose import REPO, http, readme_stack_commands, url
from tests.compose.browser import screenshot

pytestmark = [pytest.mark.slow]

MODEL_NAME = "fraudlab_fraud_classifier"
EXPECTED_APPS = ("generate_transactions.py", "prepare_data.py", "fit_model.py")


def test_the_readme_lists_generate_prepare_and_fit_for_the_stack():
    commands = readme_stack_commands()
    apps = [next(w for w in shlex.split(c) if w.endswith(".py")).rsplit("/", 1)[1] for c in commands]
    assert apps[:3] == list(EXPECTED_APPS), apps
    for command in commands:
        words = shlex.split(command)
        assert words[:3] == ["docker", "exec", "fraudlab-spark-worker-a-1"], command
        assert "--master" in words and words[words.index("--master") + 1] == "spark://spark-master:7077"


@pytest.fixture(scope="module")
def readme_run(stack):
    """Each README command run by bash exactly as written, against the stack's engine."""
    results = []
    for command in readme_stack_commands()[:3]:
        started = time.perf_counter()
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=stack.env,
                              capture_output=True, text=True, timeout=1800, check=False)
        seconds = time.perf_counter() - started
        app = next(w for w in shlex.split(command) if w.endswith(".py")).rsplit("/", 1)[1]
        stack.timings[f"README: {app} on the cluster"] = seconds
        stack.sample_memory()
        results.append((app, done))
        if done.returncode != 0:
            break
    return results


def test_every_readme_command_succeeds(readme_run):
    assert len(readme_run) == 3
    for app, done in readme_run:
        assert done.returncode == 0, f"{app} exited {done.returncode}:\n{done.stderr[-6000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-4000:]


def test_the_generated_csv_holds_the_rows_asked_for(stack, readme_run):
    command = readme_stack_commands()[0].split()
    rows = int(command[command.index("--rows") + 1])
    lines = stack.exec("spark-worker-b", "wc", "-l", "/opt/fraudlab/data/raw/transactions.csv").stdout.split()[0]
    assert int(lines) == rows + 1  # the header


def test_prepare_accounts_for_every_row(stack, readme_run):
    metrics = json.loads(stack.exec("spark-master", "cat",
                                    "/opt/fraudlab/data/prepared/transactions/_metrics.json").stdout)
    assert metrics["rows_in"] == metrics["rows_out"] + metrics["rows_quarantined"]
    assert metrics["rows_out"] > 0


def test_the_apps_ran_on_the_cluster_with_both_workers(stack, readme_run):
    status, master = http("GET", url("SPARK_MASTER_UI_PORT", "/json/"))
    assert status == 200
    finished = {app["name"] for app in master["completedapps"] if app["state"] == "FINISHED"}
    for name in ("prepare_data", "fit_model"):
        assert name in finished, master["completedapps"]
    workers = {w["host"] for w in master["workers"]}
    assert workers == {"spark-worker-a", "spark-worker-b"}, workers


def test_the_model_is_registered_as_champion_in_the_stacks_mlflow(stack, readme_run):
    status, body = http("GET", url("MLFLOW_PORT", f"/api/2.0/mlflow/registered-models/alias?name={MODEL_NAME}"
                                   "&alias=champion"))
    assert status == 200, body
    saved = stack.exec("spark-master", "ls", "/opt/fraudlab/data/models/fraud_model").stdout.split()
    assert "metrics.json" in saved, saved
    text = screenshot("mlflow-model", url("MLFLOW_PORT", f"/#/models/{MODEL_NAME}"), wait_for="champion")
    assert MODEL_NAME in text
