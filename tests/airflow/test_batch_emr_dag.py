"""``fraud_batch_emr`` run with ``dag.test()`` against moto's in-process AWS (S3 and EMR).

moto accepts every call the DAG makes but never moves a step on: the first step
stays RUNNING and the others PENDING. The tests therefore decide the steps'
outcome themselves, by setting the state of the steps moto creates (all
COMPLETED, or the fit step FAILED and the later ones CANCELLED as
``CANCEL_AND_WAIT`` would), and then check what the DAG did about it: what was
uploaded, the cluster it asked for, the spark-submit commands of the steps, the
run's state, and that the cluster ends TERMINATED in both cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import pytest

REGION = "eu-west-1"
BUCKET = "fraudlab-test"
DATA_ROOT = f"s3://{BUCKET}/fraudlab"
APPS = ("prepare_data", "fit_model", "score_claims", "monthly_report")
SPARK_APPS = Path(__file__).resolve().parents[2] / "spark-apps"

OUTCOMES = {
    "completed": ("COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED"),
    "fit_fails": ("COMPLETED", "FAILED", "CANCELLED", "CANCELLED"),
}


@contextlib.contextmanager
def moto_aws(step_states: tuple[str, ...]):
    """moto's AWS in this process, an aws_default connection for it, an empty bucket, and steps that
    start out in ``step_states`` (moto itself never finishes a step)."""
    import boto3
    from moto import mock_aws
    from moto.emr.models import Cluster

    add_steps = Cluster.add_steps

    def add_steps_with_outcome(self, steps):
        added = add_steps(self, steps)
        if not added:  # moto's RunJobFlow adds its (empty) Steps list too
            return added
        for step, state in zip(added, step_states, strict=True):
            step.state = state
        return added

    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
                           "AWS_DEFAULT_REGION": REGION}.items():
            patch.setenv(key, value)
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
        patch.setattr(Cluster, "add_steps", add_steps_with_outcome)
        with mock_aws():
            boto3.client("s3", region_name=REGION).create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
            yield boto3.Session(region_name=REGION)


def the_cluster(session) -> dict:
    emr = session.client("emr")
    clusters = emr.list_clusters()["Clusters"]
    assert len(clusters) == 1, clusters
    return emr.describe_cluster(ClusterId=clusters[0]["Id"])["Cluster"]


def run_prefix(run_id: str) -> str:
    import re

    return f"fraudlab/runs/fraud_batch_emr/{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}"


class TestStepsComplete:
    """Every step COMPLETED: the run succeeds, every step was watched, the cluster is terminated."""

    @pytest.fixture(scope="class")
    def completed_run(self, dagbag, run_dag, airflow_db):
        with moto_aws(OUTCOMES["completed"]) as session:
            run = run_dag(dagbag.dags["fraud_batch_emr"], {"data_root": DATA_ROOT},
                          "fraud_batch_emr (moto, steps complete)")
            yield run, session

    def test_run_succeeds_and_the_cluster_is_terminated(self, completed_run):
        run, session = completed_run
        assert run.state == "success"
        assert run.states == {"stage_code": "success", "create_cluster": "success", "add_steps": "success",
                              **{f"watch_step[{i}]": "success" for i in range(4)},
                              "terminate_cluster": "success"}
        assert the_cluster(session)["Status"]["State"] == "TERMINATED"

    def test_code_is_staged_for_the_run(self, completed_run):
        run, session = completed_run
        s3 = session.client("s3")
        prefix = f"{run_prefix(run.run_id)}/code"
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
        assert keys == {f"{prefix}/{name}" for name in (*[f"{a}.py" for a in APPS], "fraudlab.zip", "bootstrap.sh")}
        for app in APPS:
            body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{app}.py")["Body"].read()
            assert body == (SPARK_APPS / f"{app}.py").read_bytes()
        package = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/fraudlab.zip")["Body"].read()
        names = set(zipfile.ZipFile(io.BytesIO(package)).namelist())
        assert {"fraudlab/__init__.py", "fraudlab/config.py", "fraudlab/train/pipeline.py"} <= names
        bootstrap = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/bootstrap.sh")["Body"].read().decode()
        assert "/usr/bin/python3.11 -m pip install" in bootstrap and '"mlflow==3.17.2"' in bootstrap

    def test_cluster_is_spark_4_with_the_bootstrap_action(self, completed_run):
        run, session = completed_run
        cluster = the_cluster(session)
        assert cluster["ReleaseLabel"] == "emr-spark-8.0.0"
        assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
        actions = session.client("emr").list_bootstrap_actions(ClusterId=cluster["Id"])["BootstrapActions"]
        assert [a["ScriptPath"] for a in actions] == [f"s3://{BUCKET}/{run_prefix(run.run_id)}/code/bootstrap.sh"]

    def test_steps_carry_the_spark_submit_commands(self, completed_run):
        run, session = completed_run
        run_dir = f"s3://{BUCKET}/{run_prefix(run.run_id)}"
        code = f"{run_dir}/code"
        tracking = ["--tracking-uri", "sqlite:////tmp/fraudlab-mlflow/mlflow.db"]
        expected_args = {
            "prepare_data": ["--input", f"{DATA_ROOT}/raw/transactions.csv", "--output", f"{run_dir}/prepared",
                             "--quarantine", f"{run_dir}/quarantine", "--start-date", "2024-01-01"],
            "fit_model": ["--input", f"{run_dir}/prepared", "--model-dir", f"{run_dir}/model", "--search", "fast",
                          *tracking, "--gate", "min_average_precision=0.7", "--gate", "min_roc_auc=0.95",
                          "--gate", "min_recall=0.5"],
            "score_claims": ["--input", f"{run_dir}/prepared", "--format", "parquet", "--model", f"{run_dir}/model",
                             *tracking, "--output", f"{DATA_ROOT}/scored/claims", "--output-format", "parquet"],
            "monthly_report": ["--input", f"{DATA_ROOT}/scored/claims", "--month", "2024-06",
                               "--output", f"{DATA_ROOT}/reports"],
        }
        steps = session.client("emr").list_steps(ClusterId=the_cluster(session)["Id"])["Steps"]
        steps = sorted(steps, key=lambda s: APPS.index(s["Name"]))
        assert [s["Name"] for s in steps] == list(APPS)
        for step in steps:
            app = step["Name"]
            assert step["Config"]["Jar"] == "command-runner.jar"
            assert step["Config"]["Args"] == ["spark-submit", "--deploy-mode", "cluster", "--name", app,
                                              "--py-files", f"{code}/fraudlab.zip", f"{code}/{app}.py",
                                              *expected_args[app]]
            assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"


def test_failed_step_fails_the_run_and_the_cluster_is_still_terminated(dagbag, run_dag, airflow_db):
    with moto_aws(OUTCOMES["fit_fails"]) as session:
        run = run_dag(dagbag.dags["fraud_batch_emr"], {"data_root": DATA_ROOT},
                      "fraud_batch_emr (moto, fit step fails)")

        assert run.state == "failed"
        assert run.states["watch_step[0]"] == "success"
        assert [run.states[f"watch_step[{i}]"] for i in (1, 2, 3)] == ["failed", "failed", "failed"]
        assert run.states["terminate_cluster"] == "success"
        assert the_cluster(session)["Status"]["State"] == "TERMINATED"


def test_retried_create_cluster_and_add_steps_start_one_cluster_and_add_the_steps_once(dagbag, run_dag, airflow_db):
    """AWS does what the first try of create_cluster and of add_steps asked, then that try fails (the answer
    lost on its way, a worker gone): the retries must find the cluster and the steps, not make more."""
    from datetime import timedelta

    from moto.emr.exceptions import ValidationException
    from moto.emr.models import ElasticMapReduceBackend

    dag = dagbag.dags["fraud_batch_emr"]
    calls = {"run_job_flow": 0, "add_job_flow_steps": 0}

    def first_answer_lost(name):
        original = getattr(ElasticMapReduceBackend, name)

        def call(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            calls[name] += 1
            if calls[name] == 1:
                raise ValidationException(f"{name} done, answer lost (test fault)")
            return result
        return call

    with moto_aws(OUTCOMES["completed"]) as session, pytest.MonkeyPatch.context() as patch:
        for name in calls:
            patch.setattr(ElasticMapReduceBackend, name, first_answer_lost(name))
        for task_id in ("create_cluster", "add_steps"):
            patch.setattr(dag.get_task(task_id), "retry_delay", timedelta(seconds=1))
        run = run_dag(dag, {"data_root": DATA_ROOT}, "fraud_batch_emr (moto, first tries' answers lost)")

        assert calls == {"run_job_flow": 1, "add_job_flow_steps": 1}  # the retries called neither
        assert run.state == "success", run.states
        cluster = the_cluster(session)  # exactly one
        steps = session.client("emr").list_steps(ClusterId=cluster["Id"])["Steps"]
        assert sorted(s["Name"] for s in steps) == sorted(APPS)  # four records: each step once
        assert cluster["Status"]["State"] == "TERMINATED"


def test_an_api_error_while_watching_a_step_is_retried_and_never_ends_the_cluster_early(dagbag, run_dag,
                                                                                       airflow_db):
    """The first DescribeStep call fails (a throttled or dropped API call): the watch is retried and the
    run succeeds; only a step's own FAILED state fails its watcher for good (the test above)."""
    from datetime import timedelta

    from moto.emr.exceptions import ValidationException
    from moto.emr.models import ElasticMapReduceBackend

    dag = dagbag.dags["fraud_batch_emr"]
    describe_step = ElasticMapReduceBackend.describe_step
    calls = []

    def fails_once(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise ValidationException("Rate exceeded (test fault)")
        return describe_step(self, *args, **kwargs)

    with moto_aws(OUTCOMES["completed"]) as session, pytest.MonkeyPatch.context() as patch:
        patch.setattr(ElasticMapReduceBackend, "describe_step", fails_once)
        patch.setattr(dag.get_task("watch_step"), "retry_delay", timedelta(seconds=1))
        run = run_dag(dag, {"data_root": DATA_ROOT}, "fraud_batch_emr (moto, one DescribeStep error)")

        assert len(calls) >= 5  # the failed call, then one per step
        assert run.state == "success", run.states
        assert {run.states[f"watch_step[{i}]"] for i in range(4)} == {"success"}
        assert the_cluster(session)["Status"]["State"] == "TERMINATED"
