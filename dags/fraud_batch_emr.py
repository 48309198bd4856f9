"""
# fraud_batch_emr

The batch pipeline of `fraud_batch_local` on **Amazon EMR**: the same four apps with the same flags,
on `s3://` paths, as `spark-submit --deploy-mode cluster` steps of a cluster that lives for one run.

| task | what it does |
|---|---|
| `stage_code` | uploads the four apps, `fraudlab.zip` (the package, for `--py-files`) and `bootstrap.sh` to `<run>/code/` |
| `create_cluster` | `RunJobFlow` with the spec `JOB_FLOW_OVERRIDES` at the top of this file; the bootstrap action installs the apps' Python dependencies on every node. A retry reuses the active cluster named after the run, so it never starts a second one |
| `add_steps` | `prepare_data`, `fit_model` (the validation gate), `score_claims`, `monthly_report`, in order; a failed step cancels the later ones (`CANCEL_AND_WAIT`). A retry finds the steps an earlier try added and adds none |
| `watch_step` | one `EmrStepSensor` per step (mapped over the step ids), in reschedule mode, so each step's state shows in the grid; a failed step fails it at once, an API error is retried (so the teardown never stops a cluster mid-step) |
| `terminate_cluster` | terminates the cluster whatever happened (`TriggerRule.ALL_DONE`); it is the cluster's teardown, so a failed step still fails the run |

## EMR release
Default `emr-spark-8.0.0`: Amazon's "runtime for Apache Spark" 8.0.0 (GA May 2026, on EMR on EC2, EKS
and Serverless) ships **Spark 4.0.2**-amzn-0, Scala 2.13, Java 17 and Python 3.11/3.12/3.13, the first EMR
release with the apps' Spark major version (the apps are written against pyspark 4.2.0; they use nothing
newer than 4.0). Every `emr-7.x` release, the newest being `emr-7.13.0`, ships Spark 3.5. Change it with the
`release_label` param. The nodes run the apps with `/usr/bin/python3.11`, the lab's Python.

## Params
- `data_root`: the S3 prefix everything lives under (default `s3://$FRAUDLAB_S3_BUCKET/fraudlab`).
- `input_path`: the BankSim CSV on S3; empty means `<data_root>/raw/transactions.csv` (upload it first).
- `start_date`, `search`, `min_average_precision`, `min_roc_auc`, `min_recall`, `report_month`: as in
  `fraud_batch_local`.
- `mlflow_tracking_uri`: an MLflow server the cluster can reach (`http://...`); the default is a
  throwaway SQLite store on the driver node (the model itself is always kept in `<run>/model`).
- `release_label`, `instance_type`: the cluster.

## Where things go
`<data_root>/runs/fraud_batch_emr/<run_id>/` holds `code/`, `prepared/`, `quarantine/`, `model/`;
`<data_root>/scored/claims` and `<data_root>/reports/month=YYYY-MM/` are the published outputs;
EMR's own logs go to `<data_root>/emr-logs/`. AWS credentials come from the `aws_default` connection
(or the usual AWS environment); nothing here is a secret.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import pendulum
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
from airflow.sdk import DAG, Param, TriggerRule, task

from fraudlab import packaging
from fraudlab.emr import EmrAddStepsOnceOperator, EmrCreateJobFlowOnceOperator, EmrStepOutcomeSensor
from fraudlab.orchestration import BATCH_APPS, DEFAULT_ARGS, RUN_DIR, SPARK_APPS, batch_app_args, batch_params, path_safe

DAG_ID = "fraud_batch_emr"
AWS_CONN_ID = "aws_default"

#: The Python the apps run with on every node, and what the bootstrap action installs into it:
#: the lock file's versions of what the apps import (Spark itself comes with the EMR release).
EMR_PYTHON = "/usr/bin/python3.11"
EMR_PYTHON_PACKAGES = ("mlflow==3.17.2", "numpy==2.4.6", "pandas==2.3.3", "pyarrow==25.0.1", "matplotlib==3.11.2")
BOOTSTRAP_SCRIPT = f"""#!/bin/bash
# fraudlab bootstrap action: the apps' Python dependencies on every node, before Spark starts.
set -euo pipefail
if [ ! -x {EMR_PYTHON} ]; then sudo dnf install -y python3.11 python3.11-pip; fi
sudo {EMR_PYTHON} -m ensurepip --upgrade || sudo dnf install -y python3.11-pip
sudo {EMR_PYTHON} -m pip install --quiet {" ".join(f'"{p}"' for p in EMR_PYTHON_PACKAGES)}
"""

# Run values, rendered when a task runs: a prefix per run (RUN_DIR), published outputs under the data root.
CODE_DIR = f"{RUN_DIR}/code"

# The cluster: one primary and two core nodes, Spark only, kept alive between steps and ended by
# terminate_cluster (the idle timeout is a safety net should that task never run).
JOB_FLOW_OVERRIDES = {
    "Name": "fraudlab-{{ run_id | path_safe }}",
    "ReleaseLabel": "{{ params.release_label }}",
    "Applications": [{"Name": "Spark"}],
    "LogUri": "{{ params.data_root }}/emr-logs/",
    "Instances": {
        "InstanceGroups": [
            {"Name": "primary", "Market": "ON_DEMAND", "InstanceRole": "MASTER",
             "InstanceType": "{{ params.instance_type }}", "InstanceCount": 1},
            {"Name": "core", "Market": "ON_DEMAND", "InstanceRole": "CORE",
             "InstanceType": "{{ params.instance_type }}", "InstanceCount": 2},
        ],
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": False,
    },
    "BootstrapActions": [
        {"Name": "fraudlab python dependencies",
         "ScriptBootstrapAction": {"Path": f"{CODE_DIR}/bootstrap.sh", "Args": []}},
    ],
    "Configurations": [
        {"Classification": "spark-defaults",
         "Properties": {"spark.pyspark.python": EMR_PYTHON, "spark.pyspark.driver.python": EMR_PYTHON}},
        {"Classification": "spark-env",
         "Configurations": [{"Classification": "export", "Properties": {"PYSPARK_PYTHON": EMR_PYTHON}}]},
    ],
    "AutoTerminationPolicy": {"IdleTimeout": 3600},
    "JobFlowRole": "EMR_EC2_DefaultRole",
    "ServiceRole": "EMR_DefaultRole",
    "VisibleToAllUsers": True,
    "Tags": [{"Key": "project", "Value": "fraudlab"}, {"Key": "airflow_dag", "Value": DAG_ID}],
}

def spark_step(app: str, args: list[str]) -> dict:
    """An EMR step running ``spark-submit --deploy-mode cluster <run>/code/<app>.py <args>``."""
    return {
        "Name": app,
        # A failed step cancels the pending ones and leaves the cluster to terminate_cluster.
        "ActionOnFailure": "CANCEL_AND_WAIT",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": ["spark-submit", "--deploy-mode", "cluster", "--name", app,
                     "--py-files", f"{CODE_DIR}/fraudlab.zip", f"{CODE_DIR}/{app}.py", *args],
        },
    }


# The apps' flags: the very lists of fraud_batch_local.
SPARK_STEPS = [spark_step(app, args) for app, args in batch_app_args(RUN_DIR).items()]


with DAG(
    dag_id=DAG_ID,
    description="prepare -> fit (gated) -> score -> report as EMR steps on a cluster that lives for one run",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["fraudlab", "batch", "spark", "emr"],
    default_args=dict(DEFAULT_ARGS),
    user_defined_filters={"path_safe": path_safe},
    params={
        "data_root": Param(f"s3://{os.environ.get('FRAUDLAB_S3_BUCKET', 'fraudlab-data')}/fraudlab",
                           type="string", pattern=r"^s3a?://", title="Data root (S3)"),
        "input_path": Param(None, type=["null", "string"], title="Input CSV (S3)",
                            description="BankSim CSV on S3; empty: <data_root>/raw/transactions.csv."),
        **batch_params(Param("sqlite:////tmp/fraudlab-mlflow/mlflow.db", type="string",
                                title="MLflow tracking URI (reachable from the cluster)")),
        "release_label": Param("emr-spark-8.0.0", type="string", title="EMR release",
                               description="emr-spark-8.0.0 ships Spark 4.0.2; emr-7.x ships Spark 3.5."),
        "instance_type": Param("m5.xlarge", type="string", title="EC2 instance type (all nodes)"),
    },
) as dag:

    @task
    def stage_code(code_dir: str) -> str:
        """Upload the apps, the zipped fraudlab package and the bootstrap script to ``code_dir``."""
        hook = S3Hook(aws_conn_id=AWS_CONN_ID)
        bucket, prefix = S3Hook.parse_s3_url(code_dir)
        prefix = prefix.rstrip("/")
        with tempfile.TemporaryDirectory() as tmp:
            package = packaging.zip_package(tmp)
            hook.load_file(package, f"{prefix}/fraudlab.zip", bucket_name=bucket, replace=True)
        for app in BATCH_APPS:
            hook.load_file(str(SPARK_APPS / f"{app}.py"), f"{prefix}/{app}.py", bucket_name=bucket, replace=True)
        hook.load_string(BOOTSTRAP_SCRIPT, f"{prefix}/bootstrap.sh", bucket_name=bucket, replace=True)
        return code_dir

    staged = stage_code(code_dir=CODE_DIR)

    # Both are safe to retry: a retry finds the cluster and the steps an earlier try made (fraudlab.emr).
    create_cluster = EmrCreateJobFlowOnceOperator(
        task_id="create_cluster",
        aws_conn_id=AWS_CONN_ID,
        job_flow_overrides=JOB_FLOW_OVERRIDES,
        emr_conn_id=None,  # the whole spec is JOB_FLOW_OVERRIDES above
    )
    add_steps = EmrAddStepsOnceOperator(
        task_id="add_steps",
        aws_conn_id=AWS_CONN_ID,
        job_flow_id=create_cluster.output,
        steps=SPARK_STEPS,
    )
    # A failed step fails its watcher at once (retrying it would only keep a paid cluster up longer);
    # an error of the watch itself (a throttled API call) takes the DAG's retries, so it never ends the
    # watch early and lets terminate_cluster stop the cluster while the step still writes.
    watch_step = EmrStepOutcomeSensor.partial(
        task_id="watch_step",
        aws_conn_id=AWS_CONN_ID,
        job_flow_id=create_cluster.output,
        mode="reschedule",
        poke_interval=60,
        timeout=timedelta(hours=4).total_seconds(),
    ).expand(step_id=add_steps.output)
    terminate_cluster = EmrTerminateJobFlowOperator(
        task_id="terminate_cluster",
        aws_conn_id=AWS_CONN_ID,
        job_flow_id=create_cluster.output,
    )

    staged >> create_cluster
    # terminate_cluster is the cluster's teardown, so its own success never hides a failed step
    # from the run's state; its trigger rule is ALL_DONE: it runs whatever happened before it.
    watch_step >> terminate_cluster.as_teardown(setups=create_cluster)
    terminate_cluster.trigger_rule = TriggerRule.ALL_DONE
