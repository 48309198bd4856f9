"""A backfill of ``fraud_monthly_report`` over two months, run by the real scheduler, twice.

The scored claims come from the session's ``fraud_batch_local`` run, copied into a
fresh data root so the reports folder starts empty. ``airflow backfill create``
(what the UI's Backfill dialog calls) queues the runs of 2024-02 and 2024-03 with
that data root as their conf; the scheduler runs them. The first backfill must
write exactly those two month partitions; the second, reprocessing the completed
runs, must run the reports again and leave every file byte for byte as it was.

The scheduler runs with ``use_job_schedule`` off, so unpausing the DAG (which a
backfill needs) does not also start the six catch-up runs of its schedule; the
schedule itself is checked in test_dag_integrity.py.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DAG_ID = "fraud_monthly_report"
FROM, TO = "2024-02-01", "2024-03-01"
MONTHS = ["month=2024-02", "month=2024-03"]
BACKFILL_TIMEOUT_S = 20 * 60


@pytest.fixture(scope="module")
def data_root(batch_local_run, tmp_path_factory):
    """A data root holding only the scored claims of the batch run."""
    root = tmp_path_factory.mktemp("backfill-data")
    shutil.copytree(batch_local_run.data_root / "scored", root / "scored")
    return root


@pytest.fixture(scope="module")
def services(data_root, airflow_db, airflow_services, tmp_path_factory):
    with airflow_services(tmp_path_factory.mktemp("backfill-services-logs")) as running:
        proc = running.cli("dags", "unpause", DAG_ID)
        assert proc.returncode == 0, proc.stderr
        yield running


def backfill(services, data_root, timings, label: str, *extra: str) -> dict[str, dict]:
    """``airflow backfill create`` over FROM..TO; wait until the scheduler completes it; the runs it made."""
    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    started = time.perf_counter()
    proc = services.cli("backfill", "create", "--dag-id", DAG_ID, "--from-date", FROM, "--to-date", TO,
                        "--dag-run-conf", json.dumps({"data_root": str(data_root)}), *extra)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    while True:
        services.check_alive()
        with create_session() as session:
            latest = session.scalars(select(Backfill).where(Backfill.dag_id == DAG_ID)
                                     .order_by(Backfill.id.desc()).limit(1)).one()
            if latest.completed_at is not None:
                runs = session.scalars(select(DagRun).where(DagRun.backfill_id == latest.id)).all()
                result = {run.logical_date.strftime("%Y-%m"): {
                    "state": plain(run.state), "run_id": run.run_id,
                    "tries": {ti.task_id: ti.try_number for ti in run.get_task_instances(session=session)},
                    "states": {ti.task_id: plain(ti.state) for ti in run.get_task_instances(session=session)},
                } for run in runs}
                break
        assert time.perf_counter() - started < BACKFILL_TIMEOUT_S, services.log_tail()
        time.sleep(5)
    timings[label] = time.perf_counter() - started
    return result


def plain(state) -> str:
    """A state enum (or string) as its plain value, e.g. ``"success"``."""
    return str(getattr(state, "value", state))


def report_files(data_root) -> dict[str, bytes]:
    reports = data_root / "reports"
    return {str(p.relative_to(reports)): p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first(services, data_root, timings):
    runs = backfill(services, data_root, timings, "fraud_monthly_report backfill 2024-02..03 (scheduler)")
    return runs, report_files(data_root)


@pytest.fixture(scope="module")
def second(first, services, data_root, timings):
    runs = backfill(services, data_root, timings, "fraud_monthly_report backfill again, reprocess completed",
                    "--reprocess-behavior", "completed")
    return runs, report_files(data_root)


def test_backfill_runs_one_successful_run_per_month(first):
    runs, _ = first
    assert sorted(runs) == ["2024-02", "2024-03"]
    assert all(run["state"] == "success" for run in runs.values()), runs


def test_backfill_writes_exactly_the_two_month_partitions(first, data_root):
    assert sorted(p.name for p in (data_root / "reports").iterdir()) == MONTHS
    for month in MONTHS:
        report = json.loads((data_root / "reports" / month / "report.json").read_text())
        assert report["month"] == month.removeprefix("month=")
        assert report["has_data"] is True and report["summary"]["claims"] > 0


def test_backfilling_again_reruns_the_reports_and_changes_nothing(first, second):
    first_runs, first_files = first
    second_runs, second_files = second
    assert sorted(second_runs) == sorted(first_runs)
    for month, run in second_runs.items():
        assert run["state"] == "success", second_runs
        assert run["tries"]["monthly_report"] > first_runs[month]["tries"]["monthly_report"], "the report ran again"
    assert sorted({name.split("/")[0] for name in second_files}) == MONTHS
    assert second_files == first_files
