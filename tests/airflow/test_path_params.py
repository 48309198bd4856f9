"""Path params of the local DAGs are confined to the lab's data root (``FRAUDLAB_DATA``).

:func:`fraudlab.orchestration.outside_data_root` is checked on its own, then for real: a
``fraud_batch_local`` run whose ``data_root`` lies outside fails at its first task, without a retry,
its Spark tasks never run and nothing is written where the param pointed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from fraudlab.orchestration import LOCAL_PATH_PARAMS, lab_data_root, outside_data_root

ROOT = "/srv/fraudlab/data"


@pytest.mark.parametrize("paths", [
    {"data_root": ROOT},
    {"data_root": f"{ROOT}/", "input_path": f"{ROOT}/raw/bs140513_032310.csv"},
    {"data_root": f"file:{ROOT}/team-a", "input_path": ""},
    {"data_root": f"{ROOT}/./team-a", "input_path": None},
    {"data_root": ROOT, "model_uri": "models:/fraudlab_fraud_classifier@champion"},
    {"data_root": ROOT, "model_uri": "runs:/0a1b2c/model"},
])
def test_paths_inside_the_data_root_pass(paths):
    assert outside_data_root(paths, ROOT) is None


@pytest.mark.parametrize("name, value, words", [
    ("data_root", "/srv/fraudlab", "outside the lab's data root"),
    ("data_root", "/srv/fraudlab/data-other", "outside the lab's data root"),
    ("input_path", "/etc/passwd", "outside the lab's data root"),
    ("input_path", f"{ROOT}/../../etc/passwd", "climbs out"),
    ("data_root", "data/runs", "relative path"),
    ("input_path", "s3://bucket/srv/fraudlab/data/raw.csv", "outside the lab's data root"),
    ("model_uri", "/tmp/someone-elses-model", "outside the lab's data root"),
])
def test_a_path_outside_is_one_sentence_naming_the_param(name, value, words):
    problem = outside_data_root({"data_root": ROOT, name: value}, ROOT)
    assert problem is not None and words in problem
    assert problem.startswith(f"param {name}={value!r} ") and "\n" not in problem


def test_an_s3_root_confines_to_its_bucket_and_prefix():
    root = "s3://fraudlab-data/fraudlab"
    assert outside_data_root({"data_root": f"{root}/team-a"}, root) is None
    assert "outside" in outside_data_root({"data_root": "s3://other-bucket/fraudlab"}, root)
    assert "outside" in outside_data_root({"data_root": "/fraudlab"}, root)


def test_the_data_root_is_read_when_the_task_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUDLAB_DATA", str(tmp_path))
    assert lab_data_root() == str(tmp_path)


@pytest.mark.slow
def test_a_run_with_a_data_root_outside_fails_at_its_first_task_and_writes_nothing(airflow_db, dagbag, run_dag,
                                                                                    lab_data_root):
    outside = Path(tempfile.mkdtemp(prefix="fraudlab-outside-"))
    assert not outside.is_relative_to(lab_data_root)
    dag = dagbag.dags["fraud_batch_local"]
    run = run_dag(dag, {"data_root": str(outside), "search": "smoke"}, "fraud_batch_local (data root outside)")
    assert run.state == "failed"
    assert run.states == {"package_fraudlab": "failed", **{app: "upstream_failed" for app in
                                                            ("prepare_data", "fit_model", "score_claims",
                                                             "monthly_report")}}
    assert list(outside.iterdir()) == []
    outside.rmdir()


def test_every_local_dag_confines_its_path_params(dagbag):
    """The first task of each local DAG gets every param that names a path."""
    expected = {"fraud_batch_local": set(LOCAL_PATH_PARAMS), "fraud_monthly_report": {"data_root"},
                "fraud_streaming": {*LOCAL_PATH_PARAMS, "model_uri"}}
    for dag_id, names in expected.items():
        package = dagbag.dags[dag_id].get_task("package_fraudlab")
        assert set(package.op_kwargs["paths"]) == names, dag_id
