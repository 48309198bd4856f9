"""What the DAGs share: run paths, the common flags of the batch apps, the package task, spark-submit tasks.

The DAG files in ``dags/`` only orchestrate; the pieces two or more of them need live here once:

- :func:`path_safe`, the Jinja filter that turns a run id into a folder name or S3 key part, and the
  run-value templates built on it (:data:`RUN_DIR`, :data:`INPUT`, :data:`SCORED`, :data:`REPORTS`);
- :func:`batch_app_args`, the flags of the four batch apps, one list for the local and the EMR DAG;
- :func:`batch_params`, the trigger-form params both batch DAGs offer; :func:`local_input_params` and
  :func:`start_date_param`, the params the local DAGs (batch and streaming) state alike;
- :func:`package_task`, the task that zips ``fraudlab`` into the run folder for ``--py-files``, after
  :func:`outside_data_root` found every path param inside the lab's data root (:func:`lab_data_root`);
- :func:`spark_submit`, the ``SparkSubmitOperator`` of an app (task id, Spark name and file: one name);
- :func:`push_try_number`, a callback that tells a later task whether a task was retried;
- the endpoints a task looks up when it runs: :func:`kafka_bootstrap`, :func:`cassandra_hosts`,
  :func:`cassandra_port` (Airflow connections, else :mod:`fraudlab.config`), :func:`spark_kafka_jars`; the
  same as template macros in :data:`ENDPOINT_MACROS`.

Airflow is imported inside the functions, so the module imports without it (the apps ship it in the zip).
"""

from __future__ import annotations

import os
import posixpath
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fraudlab import config, packaging

SPARK_APPS = config.REPO_ROOT / "spark-apps"
#: The batch apps, in pipeline order.
BATCH_APPS = ("prepare_data", "fit_model", "score_claims", "monthly_report")
KAFKA_CONN_ID = "kafka_default"
CASSANDRA_CONN_ID = "cassandra_default"
#: Where ``python -m services.runner fetch spark-kafka`` puts Spark's Kafka connector.
SPARK_KAFKA_JARS_DIR = config.REPO_ROOT / ".lab" / "jars" / "spark-kafka"

#: Connect arguments of a local Airflow's SQLite metadata database (the twin, the tests), named by
#: ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS``: a writer waits up to a minute for the lock that the
#: scheduler, the API server and a CLI call (``airflow backfill create``) share, not SQLite's 5 s.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}

#: ``default_args`` every DAG starts from (a DAG adds its own ``execution_timeout``).
DEFAULT_ARGS: dict[str, Any] = {"owner": "fraudlab", "retries": 2, "retry_delay": timedelta(minutes=1)}

# Run values, rendered when a task runs: a folder per run, published outputs under the data root.
RUN_DIR = "{{ params.data_root }}/runs/{{ dag.dag_id }}/{{ run_id | path_safe }}"
INPUT = "{{ params.input_path or params.data_root ~ '/raw/transactions.csv' }}"
SCORED = "{{ params.data_root }}/scored/claims"
REPORTS = "{{ params.data_root }}/reports"


#: The trigger-form params that name paths on this machine, for :func:`package_task` to confine.
LOCAL_PATH_PARAMS = {"data_root": "{{ params.data_root }}", "input_path": "{{ params.input_path or '' }}"}


def lab_data_root() -> str:
    """The folder every local DAG reads and writes under, read when a task runs: ``FRAUDLAB_DATA``
    (the compose images set ``/opt/fraudlab/data``), else the checkout's ``data/``."""
    return os.environ.get("FRAUDLAB_DATA") or str(config.DATA_DIR)


def _location(path: str) -> tuple[str, str, str]:
    """(scheme, authority, path) of a path or URI; a plain path and ``file:`` are the local file system."""
    parts = urlsplit(path)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # one letter: a Windows drive, not a scheme
        return "file", "", parts.path if parts.scheme == "file" else path
    return parts.scheme, parts.netloc, parts.path


def outside_data_root(paths: dict[str, str | None], root: str) -> str | None:
    """Why a path param is refused, in one sentence naming the param (never a file's content); None when
    every one lies inside ``root``. Empty values and MLflow URIs (``models:``, ``runs:``) are not paths.

    A path is refused when it climbs with ``..``, is relative (to what: the worker's folder?), or is
    on another file system or outside ``root``. Symbolic links are not followed: a link inside the
    root to a file elsewhere is the operator's choice.
    """
    scheme, authority, base = _location(root)
    base = posixpath.normpath(base)
    for name, value in paths.items():
        if not value or urlsplit(value).scheme in ("models", "runs"):
            continue
        where = f"param {name}={value!r}"
        v_scheme, v_authority, v_path = _location(value)
        if ".." in v_path.split("/"):
            return f"{where} climbs out of its folder with '..': give the path inside {root} it means"
        if v_scheme == "file" and not v_path.startswith("/"):
            return f"{where} is a relative path: give an absolute one inside {root}"
        inside = posixpath.normpath(v_path)
        within = inside == base or inside.startswith(base.rstrip("/") + "/")
        if (v_scheme, v_authority) != (scheme, authority) or not within:
            return (f"{where} lies outside the lab's data root {root}: put the data under it, or run Airflow with "
                    f"FRAUDLAB_DATA set to a folder that holds it")
    return None


def path_safe(value: str) -> str:
    """A run id as a folder name or S3 key part: ``manual__2024-06-01T00:00:00+00:00`` ->
    ``manual__2024-06-01T00_00_00_00_00`` (no ``:`` or ``+``, which Hadoop paths and cluster names reject)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value))


def batch_app_args(run_dir: str = RUN_DIR) -> dict[str, list[str]]:
    """The flags of each batch app (:data:`BATCH_APPS`), exactly as on the command line.

    Per-run data under ``run_dir`` (``prepared``, ``quarantine``, ``model``), published outputs under the
    data root; the values are the trigger form's params.
    """
    prepared, quarantine, model_dir = f"{run_dir}/prepared", f"{run_dir}/quarantine", f"{run_dir}/model"
    return {
        "prepare_data": ["--input", INPUT, "--output", prepared, "--quarantine", quarantine,
                         "--start-date", "{{ params.start_date }}"],
        "fit_model": ["--input", prepared, "--model-dir", model_dir, "--search", "{{ params.search }}",
                      "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
                      "--gate", "min_average_precision={{ params.min_average_precision }}",
                      "--gate", "min_roc_auc={{ params.min_roc_auc }}",
                      "--gate", "min_recall={{ params.min_recall }}"],
        "score_claims": ["--input", prepared, "--format", "parquet", "--model", model_dir,
                         "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
                         "--output", SCORED, "--output-format", "parquet"],
        "monthly_report": ["--input", SCORED, "--month", "{{ params.report_month }}", "--output", REPORTS],
    }


def local_input_params(data_root_description: str) -> dict[str, Any]:
    """``data_root`` (default: ``FRAUDLAB_DATA``, else the checkout's ``data/``) and ``input_path``, the first
    params of the DAGs that run on this machine's paths."""
    from airflow.sdk import Param

    return {
        "data_root": Param(str(config.DATA_DIR), type="string", title="Data root", description=data_root_description),
        "input_path": Param(None, type=["null", "string"], title="Input CSV",
                            description="BankSim CSV file or folder; empty: <data_root>/raw/transactions.csv."),
    }


def start_date_param():
    """The ``start_date`` param: the date of step 0 (``--start-date`` of every app that reads the CSV)."""
    from airflow.sdk import Param

    return Param(config.DEFAULT_START_DATE, type="string", format="date", title="Date of step 0")


def batch_params(mlflow_tracking_uri: Any) -> dict[str, Any]:
    """The trigger-form params both batch DAGs have, in form order, with the DAG's own MLflow URI param.

    Each DAG puts its ``data_root`` and ``input_path`` params first (local paths or S3).
    """
    from airflow.sdk import Param

    gate = config.GateThresholds()
    return {
        "start_date": start_date_param(),
        "search": Param("fast", enum=["fast", "full", "smoke"], title="Hyper-parameter search",
                        description="fast: a small grid; full: the whole grid (much slower); "
                                    "smoke: one candidate per family, for a first try on a small cluster."),
        "min_average_precision": Param(gate.min_average_precision, type="number", minimum=0,
                                       title="Gate: minimum average precision (test months)"),
        "min_roc_auc": Param(gate.min_roc_auc, type="number", minimum=0, title="Gate: minimum ROC AUC"),
        "min_recall": Param(gate.min_recall, type="number", minimum=0,
                            title="Gate: minimum recall at the chosen threshold"),
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "report_month": Param("2024-06", type="string", pattern=config.MONTH_REGEX,
                              title="Report month (YYYY-MM)"),
    }


def package_task():
    """The ``package_fraudlab`` task: zip the package into the run folder, for the Spark tasks' ``--py-files``.

    Call the result with ``run_dir=RUN_DIR`` and ``paths`` (:data:`LOCAL_PATH_PARAMS`, plus any other
    path param); its output is the zip's path. It runs first, so a path param outside the lab's data
    root fails the run there, in one sentence, before anything is read or written (no retry).
    """
    from airflow.sdk import task

    @task(task_id="package_fraudlab")
    def package_fraudlab(run_dir: str, paths: dict[str, str]) -> str:
        """Check the path params, then zip the fraudlab package into the run folder (every Spark task's --py-files)."""
        from airflow.sdk.exceptions import AirflowFailException

        problem = outside_data_root(paths, lab_data_root())
        if problem:
            raise AirflowFailException(problem)
        return packaging.zip_package(run_dir)

    return package_fraudlab


def spark_submit(app: str, args: list[str], py_files: Any, **kwargs: Any):
    """``spark-submit spark-apps/<app>.py <args>`` on ``spark_default``: task id, Spark app name and file share one name."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return SparkSubmitOperator(
        task_id=app,
        name=app,
        application=str(SPARK_APPS / f"{app}.py"),
        application_args=args,
        py_files=py_files,
        conn_id="spark_default",
        **kwargs,
    )


#: The XCom key of :func:`push_try_number`.
TRY_NUMBER_KEY = "try_number"


def push_try_number(context: Any) -> None:
    """``on_execute_callback``: push the task's try number as its XCom ``try_number`` (a retry's XComs start
    empty, so a later task pulls the number of the try that succeeded; nothing when the task did not run)."""
    ti = context["ti"]
    ti.xcom_push(TRY_NUMBER_KEY, ti.try_number)


# --------------------------------------------------------------------------- run-time look-ups
# Called when a task runs (as template macros or from the tasks), never when a DAG file is parsed.


def _connection(conn_id: str):
    """The Airflow connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def kafka_bootstrap() -> str:
    """Kafka's bootstrap servers: ``kafka_default``'s ``bootstrap.servers`` (or host:port), else fraudlab.config."""
    conn = _connection(KAFKA_CONN_ID)
    if conn is not None:
        servers = conn.extra_dejson.get("bootstrap.servers")
        if servers:
            return str(servers)
        if conn.host:
            return f"{conn.host}:{conn.port or 9092}"
    return config.KAFKA_BOOTSTRAP


def cassandra_hosts() -> list[str]:
    """Cassandra's contact points: ``cassandra_default``'s host (comma-separated), else fraudlab.config."""
    conn = _connection(CASSANDRA_CONN_ID)
    if conn is not None and conn.host:
        return [h.strip() for h in conn.host.split(",") if h.strip()]
    return [config.CASSANDRA_HOST]


def cassandra_port() -> int:
    """Cassandra's CQL port: ``cassandra_default``'s port, else fraudlab.config."""
    conn = _connection(CASSANDRA_CONN_ID)
    if conn is not None and conn.port:
        return int(conn.port)
    return config.CASSANDRA_PORT


def spark_kafka_jars() -> str:
    """The Kafka connector jars for ``--jars``, comma-separated; empty when Spark is expected to have them."""
    return ",".join(str(p) for p in sorted(SPARK_KAFKA_JARS_DIR.glob("*.jar")))


#: The look-ups as template macros (``{{ kafka_bootstrap() }}``, ...), a DAG's ``user_defined_macros``.
ENDPOINT_MACROS = {"kafka_bootstrap": kafka_bootstrap, "cassandra_hosts": cassandra_hosts,
                   "cassandra_port": cassandra_port, "spark_kafka_jars": spark_kafka_jars}
