"""
# fraud_batch_local

The batch pipeline on **local Spark** (or the lab's standalone cluster): prepare the BankSim file, fit
the model behind its validation gate, score the claims with it, write one month's report. Every task
is `spark-submit spark-apps/<task_id>.py` with the flags you would type by hand, so a failing task
can be rerun from a shell with the command printed at the top of its log.

| task | what it runs |
|---|---|
| `package_fraudlab` | checks that every path param (`data_root`, `input_path`) lies inside the lab's data root (`FRAUDLAB_DATA`, else the checkout's `data/`): one outside fails the run here, in one sentence, with no retry and nothing read or written; then zips `spark-apps/fraudlab` into the run folder, shipped to Spark with `--py-files` |
| `prepare_data` | `prepare_data.py --input ... --output <run>/prepared --quarantine <run>/quarantine` |
| `fit_model` | `fit_model.py --input <run>/prepared --model-dir <run>/model --gate ...`: exits non-zero when the model misses a gate threshold, which fails the run; nothing is registered then, so the MLflow `champion` alias stays where it was, the failed model goes to `<run>/model_rejected` (never to `<run>/model`) and nothing is scored |
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

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from fraudlab import config
from fraudlab.orchestration import (
    DEFAULT_ARGS,
    LOCAL_PATH_PARAMS,
    RUN_DIR,
    batch_app_args,
    batch_params,
    local_input_params,
    package_task,
    path_safe,
    spark_submit,
)

DAG_ID = "fraud_batch_local"
ARGS = batch_app_args(RUN_DIR)

with DAG(
    dag_id=DAG_ID,
    description="prepare -> fit (gated) -> score -> report on local Spark",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["fraudlab", "batch", "spark"],
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=2)},
    user_defined_filters={"path_safe": path_safe},
    params={
        **local_input_params("Folder (or URI) everything is read from and written to."),
        **batch_params(Param(config.MLFLOW_TRACKING_URI, type="string", title="MLflow tracking URI")),
    },
) as dag:
    package = package_task()(run_dir=RUN_DIR, paths=LOCAL_PATH_PARAMS)

    prepare = spark_submit("prepare_data", ARGS["prepare_data"], package)
    # A failed gate is a verdict, not an accident: fitting the same data again gives the same verdict.
    fit = spark_submit("fit_model", ARGS["fit_model"], package, retries=0)
    score = spark_submit("score_claims", ARGS["score_claims"], package)
    report = spark_submit("monthly_report", ARGS["monthly_report"], package)

    prepare >> fit >> score >> report
