"""
# fraud_batch_local

The batch pipeline on **local Spark** (or the lab's standalone cluster): prepare the BankSim file, fit
the model behind its validation gate, score the claims with it, write one month's report. Every task
is `spark-submit spark-apps/<task_id>.py` with the flags you would type by hand, so a failing task
can be rerun from a shell with the command printed at the top of its log.

| task | what it runs |
|---|---|
| `package_fraudlab` | zips `spark-apps/fraudlab` into the run folder, shipped to Spark with `--py-files` |
| `prepare_data` | `prepare_data.py --input ... --output <run>/prepared --quarantine <run>/quarantine` |
| `fit_model` | `fit_model.py --input <run>/prepared --model-dir <run>/model --gate ...`: exits non-zero when the model misses a gate threshold, which fails the run; nothing is registered then, so the MLflow `champion` alias stays where it was and nothing is scored |
| `score_claims` | `score_claims.py` with this run's model on the prepared claims, into `<data_root>/scored/claims` |
| `monthly_report` | `monthly_report.py --month <report_month>` into `<data_root>/reports/month=YYYY-MM/` |

## Params (the trigger form)
- `data_root`: where everything is written (default: `FRAUDLAB_DATA`, else the checkout's `data/`).
- `input_path`: the BankSim CSV (file or folder); empty means `<data_root>/raw/transactions.csv`.
- `start_date`: the date of step 0.
- `search`: `fast` (a small grid, minutes) or `full` (the whole grid).
- `min_average_precision`, `min_roc_auc`, `min_recall`: the validation gate on the test months.
- `mlflow_tracking_uri`: where the model is logged and registered.
- `report_month`: the month of the report (BankSim covers 2024-01 to 2024-06).

## Where things go
Per run, under `<data_root>/runs/fraud_batch_local/<run_id>/`: `fraudlab.zip`, `prepared/`,
`quarantine/`, `model/`. Rerunning a task of the same run overwrites its own folder. The published
outputs are `<data_root>/scored/claims` (overwritten by each run; `fraud_monthly_report` reads it) and
`<data_root>/reports/month=YYYY-MM/` (one folder per month, overwritten). One run at a time.

Spark comes from the `spark_default` connection (`AIRFLOW_CONN_SPARK_DEFAULT`): `local[*]` by default,
`spark://<host>:7077` for the standalone cluster.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, task

from fraudlab import config, packaging

DAG_ID = "fraud_batch_local"
SPARK_APPS = config.REPO_ROOT / "spark-apps"
GATE = config.GateThresholds()

# Run values, rendered when a task runs: a folder per run, published outputs under the data root.
RUN_DIR = "{{ params.data_root }}/runs/{{ dag.dag_id }}/{{ run_id | path_safe }}"
INPUT = "{{ params.input_path or params.data_root ~ '/raw/transactions.csv' }}"
PREPARED = f"{RUN_DIR}/prepared"
QUARANTINE = f"{RUN_DIR}/quarantine"
MODEL_DIR = f"{RUN_DIR}/model"
SCORED = "{{ params.data_root }}/scored/claims"
REPORTS = "{{ params.data_root }}/reports"

# The apps' flags, exactly as on the command line.
PREPARE_ARGS = ["--input", INPUT, "--output", PREPARED, "--quarantine", QUARANTINE,
                "--start-date", "{{ params.start_date }}"]
FIT_ARGS = ["--input", PREPARED, "--model-dir", MODEL_DIR, "--search", "{{ params.search }}",
            "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
            "--gate", "min_average_precision={{ params.min_average_precision }}",
            "--gate", "min_roc_auc={{ params.min_roc_auc }}",
            "--gate", "min_recall={{ params.min_recall }}"]
SCORE_ARGS = ["--input", PREPARED, "--format", "parquet", "--model", MODEL_DIR,
              "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
              "--output", SCORED, "--output-format", "parquet"]
REPORT_ARGS = ["--input", SCORED, "--month", "{{ params.report_month }}", "--output", REPORTS]


def path_safe(value: str) -> str:
    """A run id as a folder name: ``manual__2024-06-01T00:00:00+00:00`` -> ``manual__2024-06-01T00_00_00_00_00``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value))


def spark_app(app: str, args: list[str], py_files, **kwargs) -> SparkSubmitOperator:
    """``spark-submit spark-apps/<app>.py <args>``: task id, Spark app name and file name are one name."""
    return SparkSubmitOperator(
        task_id=app,
        name=app,
        application=str(SPARK_APPS / f"{app}.py"),
        application_args=args,
        py_files=py_files,
        conn_id="spark_default",
        **kwargs,
    )


with DAG(
    dag_id=DAG_ID,
    description="prepare -> fit (gated) -> score -> report on local Spark",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["fraudlab", "batch", "spark"],
    default_args={
        "owner": "fraudlab",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=2),
    },
    user_defined_filters={"path_safe": path_safe},
    params={
        "data_root": Param(str(config.DATA_DIR), type="string", title="Data root",
                           description="Folder (or URI) everything is read from and written to."),
        "input_path": Param(None, type=["null", "string"], title="Input CSV",
                            description="BankSim CSV file or folder; empty: <data_root>/raw/transactions.csv."),
        "start_date": Param(config.DEFAULT_START_DATE, type="string", format="date", title="Date of step 0"),
        "search": Param("fast", enum=["fast", "full", "smoke"], title="Hyper-parameter search",
                        description="fast: a small grid; full: the whole grid (much slower); "
                                    "smoke: one candidate per family, for a first try on a small cluster."),
        "min_average_precision": Param(GATE.min_average_precision, type="number", minimum=0,
                                       title="Gate: minimum average precision (test months)"),
        "min_roc_auc": Param(GATE.min_roc_auc, type="number", minimum=0, title="Gate: minimum ROC AUC"),
        "min_recall": Param(GATE.min_recall, type="number", minimum=0,
                            title="Gate: minimum recall at the chosen threshold"),
        "mlflow_tracking_uri": Param(config.MLFLOW_TRACKING_URI, type="string", title="MLflow tracking URI"),
        "report_month": Param("2024-06", type="string", pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
                              title="Report month (YYYY-MM)"),
    },
) as dag:

    @task
    def package_fraudlab(run_dir: str) -> str:
        """Zip the fraudlab package into the run folder; the zip goes to every Spark task as --py-files."""
        return packaging.zip_package(run_dir)

    package = package_fraudlab(run_dir=RUN_DIR)

    prepare = spark_app("prepare_data", PREPARE_ARGS, package)
    # A failed gate is a verdict, not an accident: fitting the same data again gives the same verdict.
    fit = spark_app("fit_model", FIT_ARGS, package, retries=0)
    score = spark_app("score_claims", SCORE_ARGS, package)
    report = spark_app("monthly_report", REPORT_ARGS, package)

    prepare >> fit >> score >> report
