"""An Airflow task retry, for real: ``monthly_report`` dies once before it publishes its month, Airflow
runs the task again, and the retry writes what a clean run writes.

``fraud_monthly_report`` runs with ``dag.test()`` for 2024-05 (logical date 2024-06-01: the run after
the month) over a copy of the scored claims of the session's ``fraud_batch_local`` run. The failpoint
``before_swap:month=2024-05`` with
``FRAUDLAB_FAILPOINT_ONCE`` SIGKILLs the first try's spark-submit once the month's files are written to
their staging folder and before the swap, as a crash there would; the task's retry runs with the same
environment and goes through (the task's retry delay is cut to seconds for the test). The month's folder
then holds exactly what a clean ``monthly_report`` of the same claims and month writes, byte for byte;
of the killed try only its hidden staging copy is left beside it, as ``fraudlab.io.publishing`` says.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import pendulum
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DAG_ID = "fraud_monthly_report"
MONTH = "month=2024-05"


def month_files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_task_killed_once_is_retried_by_airflow_and_writes_what_a_clean_run_writes(
        batch_local_run, dagbag, tmp_path_factory, monkeypatch, spark_submit):
    data_root = tmp_path_factory.mktemp("retry-data")
    shutil.copytree(batch_local_run.data_root / "scored", data_root / "scored")
    marker = data_root / "failpoint-fired"
    monkeypatch.setenv("FRAUDLAB_FAILPOINT", f"before_swap:{MONTH}")
    monkeypatch.setenv("FRAUDLAB_FAILPOINT_ONCE", str(marker))
    dag = dagbag.dags[DAG_ID]
    task = dag.task_dict["monthly_report"]
    assert task.retries >= 1, "the DAG's tasks are retried"
    monkeypatch.setattr(task, "retry_delay", timedelta(seconds=2))

    dag_run = dag.test(run_conf={"data_root": str(data_root)},
                       logical_date=pendulum.datetime(2024, 6, 1, tz="UTC"))

    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    assert marker.exists(), "the failpoint fired: the first try was killed before its swap"
    assert tis["monthly_report"].try_number == 2 and tis["package_fraudlab"].try_number == 1
    reports = data_root / "reports"
    names = sorted(p.name for p in reports.iterdir())
    assert [name for name in names if not name.startswith(".")] == [MONTH]
    # The killed try's hidden staging copy stays until a later publish finds it an hour old (a younger one
    # may be a live run's); no lock is left, and readers never list hidden folders.
    hidden = [name for name in names if name.startswith(".")]
    assert len(hidden) == 1 and hidden[0].startswith(f".{MONTH}.staging-"), names
    clean = tmp_path_factory.mktemp("retry-clean") / "reports"
    done = spark_submit("monthly_report.py", "--input", str(data_root / "scored" / "claims"), "--month", "2024-05",
                        "--output", str(clean))
    assert done.returncode == 0, done.stderr[-3000:]
    assert month_files(reports / MONTH) == month_files(clean / MONTH)
