"""
# fraud_monthly_report

One report per month of scored claims: each run writes
`<data_root>/reports/month=YYYY-MM/` (`report.json`, the CSV tables, `chart.png`) for the month of its
data interval, from the claims `fraud_batch_local` scored into `<data_root>/scored/claims`.

| task | what it runs |
|---|---|
| `package_fraudlab` | checks that `data_root` lies inside the lab's data root (`FRAUDLAB_DATA`, else the checkout's `data/`; outside: the run fails here, in one sentence, with no retry), then zips `spark-apps/fraudlab` into the run folder, shipped to Spark with `--py-files` |
| `monthly_report` | `monthly_report.py --input <data_root>/scored/claims --month {{ data_interval_start }}'s YYYY-MM --output <data_root>/reports` |

## Schedule
`@monthly` with data intervals: the run for a month covers `[first day, first day of the next month)`
and starts once the month is over. BankSim covers 2024-01 to 2024-06, so the schedule starts on
2024-01-01, ends on 2024-06-30 and has six runs; with catchup on, unpausing the DAG writes all six
reports. A month's report is rewritten as a whole, so rerunning or backfilling a month is idempotent.

## Backfill a range
- UI: the DAG's page, *Trigger* -> *Backfill*, pick the dates (logical dates are the months' first
  days), *Reprocess behaviour* `completed` to rewrite months already reported.
- CLI: `airflow backfill create --dag-id fraud_monthly_report --from-date 2024-01-01 --to-date 2024-02-01
  [--reprocess-behavior completed] [--dag-run-conf '{"data_root": "/path/to/data"}']`; the scheduler runs it.

## Params
- `data_root`: where the scored claims are read and the reports written (default `FRAUDLAB_DATA`, else
  the checkout's `data/`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from fraudlab import config
from fraudlab.orchestration import DEFAULT_ARGS, REPORTS, RUN_DIR, SCORED, package_task, path_safe, spark_submit

DAG_ID = "fraud_monthly_report"
MONTH = "{{ data_interval_start.strftime('%Y-%m') }}"

REPORT_ARGS = ["--input", SCORED, "--month", MONTH, "--output", REPORTS]


with DAG(
    dag_id=DAG_ID,
    description="monthly_report for the month of each data interval, 2024-01 to 2024-06",
    doc_md=__doc__,
    # Explicitly the data-interval flavour of @monthly (Airflow 3's default for cron strings is a
    # point in time): the run for a month starts after the month is over.
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2024, 6, 30, tz="UTC"),
    catchup=True,
    max_active_runs=2,
    tags=["fraudlab", "batch", "spark", "report"],
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=1)},
    user_defined_filters={"path_safe": path_safe},
    params={
        "data_root": Param(str(config.DATA_DIR), type="string", title="Data root",
                           description="Scored claims are read from <data_root>/scored/claims, "
                                       "reports written to <data_root>/reports."),
    },
) as dag:

    package = package_task()(run_dir=RUN_DIR, paths={"data_root": "{{ params.data_root }}"})
    spark_submit("monthly_report", REPORT_ARGS, package)
