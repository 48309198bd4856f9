"""Jupyter in the stack: the three notebooks execute inside the jupyter container, with their
default parameters, against the stack's services (the data volume, MLflow, Kafka, Cassandra),
and JupyterLab lists them in Chromium."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.compose import url
from tests.compose.browser import screenshot

pytestmark = [pytest.mark.slow]

NOTEBOOKS = ("01_explore_transactions.ipynb", "02_model_analysis.ipynb", "03_streaming_inspection.ipynb")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_executes_in_the_container(stack, name):
    started = time.perf_counter()
    out = f"/tmp/{name}"
    done = stack.exec("jupyter", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                      "--ExecutePreprocessor.timeout=900", "--output", out, f"/opt/fraudlab/notebooks/{name}",
                      timeout=1200, check=False)
    stack.timings[f"notebook {name} in the jupyter container"] = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-6000:]
    executed = json.loads(stack.exec("jupyter", "cat", out).stdout)
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[:1]
    assert all(c.get("execution_count") for c in code), "a code cell did not run"
    figures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, f"{name} drew no figure"


def test_jupyterlab_lists_the_notebooks(stack):
    logs = stack.compose("logs", "--no-color", "jupyter").stdout
    tokens = re.findall(r"[?&]token=([0-9a-f]{20,})", logs)
    assert tokens, "Jupyter logged no login URL with a token"
    text = screenshot("jupyterlab", url("JUPYTER_PORT", f"/lab?token={tokens[-1]}"),
                      wait_for="03_streaming_inspection.ipynb")
    for name in NOTEBOOKS:
        assert name in text
