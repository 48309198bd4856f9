"""DAG integrity: every file in dags/ parses and follows the house rules; each DAG has its expected graph.

The DAG folder is parsed once (``dagbag``); tests are parametrised per file, so a
failure names the DAG. No DAG runs here: this is what the DAG processor sees.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
SPARK_APPS = REPO / "spark-apps"

DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
DAG_IDS = [path.stem for path in DAG_FILES]

#: task id -> the task ids directly downstream of it.
EXPECTED_GRAPHS = {
    "fraud_batch_local": {
        "package_fraudlab": {"prepare_data", "fit_model", "score_claims", "monthly_report"},
        "prepare_data": {"fit_model"},
        "fit_model": {"score_claims"},
        "score_claims": {"monthly_report"},
        "monthly_report": set(),
    },
    "fraud_batch_emr": {
        "stage_code": {"create_cluster"},
        "create_cluster": {"add_steps", "watch_step", "terminate_cluster"},
        "add_steps": {"watch_step"},
        "watch_step": {"terminate_cluster"},
        "terminate_cluster": set(),
    },
    "fraud_monthly_report": {
        "package_fraudlab": {"monthly_report"},
        "monthly_report": set(),
    },
    "fraud_streaming": {
        "package_fraudlab": {"stream_csv_to_kafka", "classify_stream"},
        "topic_offsets_before": {"stream_csv_to_kafka", "check_outputs"},
        "stream_csv_to_kafka": {"topic_offsets_after"},
        # The range is closed before the classifier starts, so its available-now run covers it.
        "topic_offsets_after": {"alerts_offsets_before", "check_outputs"},
        # The alerts topic's range is opened before the classifier starts and closed once it is done.
        "alerts_offsets_before": {"classify_stream", "check_outputs"},
        "classify_stream": {"alerts_offsets_after"},
        "alerts_offsets_after": {"check_outputs"},
        "check_outputs": set(),
    },
}
SPARK_APPS_RUN = ("prepare_data", "fit_model", "score_claims", "monthly_report")
PATH_FLAGS = ("--input", "--output", "--quarantine", "--model-dir", "--model", "--metrics", "--checkpoint",
              "--progress-file")


def dag_call(path: Path) -> ast.Call:
    """The ``DAG(...)`` call of a DAG file."""
    calls = [node for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG"]
    assert len(calls) == 1, f"{path.name}: expected one DAG(...) call, found {len(calls)}"
    return calls[0]


def flags(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--")]


def spark_tasks(dag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return [t for t in dag.tasks if isinstance(t, SparkSubmitOperator)]


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_file_imports_without_errors(dagbag, path):
    errors = {Path(f).name: e for f, e in dagbag.import_errors.items()}
    assert path.name not in errors, errors.get(path.name)


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_one_dag_per_file_and_its_id_is_the_file_name(dagbag, path):
    in_file = [dag.dag_id for dag in dagbag.dags.values() if Path(dag.fileloc) == path]
    assert in_file == [path.stem]


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_schedule_catchup_start_date_docs_and_tags_are_stated(path):
    stated = {kw.arg for kw in dag_call(path).keywords}
    missing = {"schedule", "catchup", "start_date", "doc_md", "tags", "default_args"} - stated
    assert not missing, f"{path.name} leaves {sorted(missing)} to Airflow's defaults"


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_docs_are_the_module_docstring_or_the_markdown_file_next_to_it(dagbag, path):
    """A DAG's UI docs are its module docstring, or ``<dag_id>.md`` beside it when the docs are long."""
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    markdown = path.with_suffix(".md")
    docs = markdown.read_text() if markdown.is_file() else docstring
    assert docstring and docs and dagbag.dags[path.stem].doc_md == docs
    assert docs.startswith(f"\n# {path.stem}\n") or docs.startswith(f"# {path.stem}\n")


def test_streaming_docs_are_the_markdown_file_and_name_every_task_and_param(dagbag):
    dag = dagbag.dags["fraud_streaming"]
    assert dag.doc_md == (DAGS_DIR / "fraud_streaming.md").read_text()
    for name in [*dag.task_dict, *dag.params]:
        assert f"`{name}`" in dag.doc_md, f"fraud_streaming.md does not mention {name}"


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_owner_retries_and_tags(dagbag, path):
    dag = dagbag.dags[path.stem]
    assert dag.default_args.get("owner") == "fraudlab"
    assert dag.default_args.get("retries", 0) >= 2
    assert "fraudlab" in dag.tags


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_start_date_is_fixed_at_the_first_banksim_day(dagbag, path):
    assert dagbag.dags[path.stem].start_date == pendulum.datetime(2024, 1, 1, tz="UTC")


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_task_graph(dagbag, path):
    dag = dagbag.dags[path.stem]
    graph = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert graph == EXPECTED_GRAPHS[path.stem]


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_param_defaults_are_valid(dagbag, path):
    dagbag.dags[path.stem].params.validate()


@pytest.mark.parametrize("param", ["topic", "alerts_topic", "dead_letter_topic", "keyspace"])
@pytest.mark.parametrize("name", [".", "..", "../checkpoints", "a/b", "", "x" * 250])
def test_streaming_names_that_kafka_or_cassandra_refuse_are_refused_by_the_trigger_form(dagbag, param, name):
    """The topic and the keyspace are folders of the checkpoint path: no name may climb out of it."""
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dagbag.dags["fraud_streaming"].params.get_param(param).resolve(name)
    assert dagbag.dags["fraud_streaming"].params.get_param(param).resolve("fraud_tx.v2" if "topic" in param
                                                                          else "fraud_v2")


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_spark_tasks_run_the_app_of_their_name_with_the_package(dagbag, path):
    from airflow.sdk import XComArg

    for task in spark_tasks(dagbag.dags[path.stem]):
        assert task.application == str(SPARK_APPS / f"{task.task_id}.py")
        assert Path(task.application).is_file()
        assert task.name == task.task_id
        assert task._conn_id == "spark_default"
        assert isinstance(task.py_files, XComArg), "the fraudlab zip comes from the packaging task"


@pytest.mark.parametrize("path", DAG_FILES, ids=DAG_IDS)
def test_paths_are_rendered_at_run_time(dagbag, path):
    """Every path flag is a template (data root param, run id): nothing is fixed when the file is parsed."""
    dag = dagbag.dags[path.stem]
    arg_lists = [task.application_args for task in spark_tasks(dag)]
    if "add_steps" in dag.task_dict:
        arg_lists += [step["HadoopJarStep"]["Args"] for step in dag.task_dict["add_steps"].steps]
    assert arg_lists
    for args in arg_lists:
        for flag, value in zip(args, args[1:]):
            if flag in PATH_FLAGS:
                assert "{{" in value, f"{flag} {value} is fixed at parse time"


def test_local_dag_runs_the_four_apps_in_order(dagbag):
    dag = dagbag.dags["fraud_batch_local"]
    assert [t.task_id for t in spark_tasks(dag)] == list(SPARK_APPS_RUN)
    assert dag.schedule is None, "triggered by hand (or the API), never on a schedule"


def test_a_failed_gate_is_not_retried(dagbag):
    assert dagbag.dags["fraud_batch_local"].task_dict["fit_model"].retries == 0


def test_emr_steps_run_the_same_apps_with_the_same_flags(dagbag):
    local = {t.task_id: flags(t.application_args) for t in spark_tasks(dagbag.dags["fraud_batch_local"])}
    steps = dagbag.dags["fraud_batch_emr"].task_dict["add_steps"].steps
    assert [s["Name"] for s in steps] == list(SPARK_APPS_RUN)
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--name", step["Name"]]
        assert args[5] == "--py-files" and args[6].endswith("/code/fraudlab.zip")
        assert args[7].endswith(f"/code/{step['Name']}.py")
        assert flags(args[8:]) == local[step["Name"]]
        assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"


def test_emr_cluster_runs_spark_4_with_a_bootstrap_action(dagbag):
    dag = dagbag.dags["fraud_batch_emr"]
    assert dag.params["release_label"] == "emr-spark-8.0.0"
    spec = dag.task_dict["create_cluster"].job_flow_overrides
    assert spec["ReleaseLabel"] == "{{ params.release_label }}"
    assert spec["Applications"] == [{"Name": "Spark"}]
    assert spec["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"].endswith("/code/bootstrap.sh")
    assert spec["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True


def test_emr_cluster_is_terminated_whatever_happened(dagbag):
    from airflow.sdk import TriggerRule

    dag = dagbag.dags["fraud_batch_emr"]
    terminate = dag.task_dict["terminate_cluster"]
    assert terminate.trigger_rule == TriggerRule.ALL_DONE
    assert terminate.is_teardown, "a teardown: its success must not hide a failed step"
    assert dag.task_dict["create_cluster"].is_setup
    assert all(task.aws_conn_id == "aws_default" for task in dag.tasks if hasattr(task, "aws_conn_id"))


def test_monthly_schedule_is_the_six_banksim_months(dagbag):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dagbag.dags["fraud_monthly_report"]
    assert dag.catchup is True
    assert dag.end_date == pendulum.datetime(2024, 6, 30, tz="UTC")
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    months, info = [], scheduler_dag.next_dagrun_info(last_automated_run_info=None)
    while info is not None and len(months) < 24:
        months.append((info.data_interval.start.strftime("%Y-%m"), info.data_interval.end.strftime("%Y-%m")))
        info = scheduler_dag.next_dagrun_info(last_automated_run_info=info)
    assert months == [("2024-01", "2024-02"), ("2024-02", "2024-03"), ("2024-03", "2024-04"),
                      ("2024-04", "2024-05"), ("2024-05", "2024-06"), ("2024-06", "2024-07")]


def test_monthly_report_month_is_the_data_interval_month(dagbag):
    args = dagbag.dags["fraud_monthly_report"].task_dict["monthly_report"].application_args
    assert args[args.index("--month") + 1] == "{{ data_interval_start.strftime('%Y-%m') }}"


def test_streaming_dag_replays_then_classifies_available_now(dagbag):
    dag = dagbag.dags["fraud_streaming"]
    assert [t.task_id for t in spark_tasks(dag)] == ["stream_csv_to_kafka", "classify_stream"]
    assert dag.schedule is None and dag.catchup is False
    assert dag.max_active_runs == 1, "the runs share the classifier's checkpoint"
    replay, classify = (dag.task_dict[t] for t in ("stream_csv_to_kafka", "classify_stream"))
    assert replay.application_args[replay.application_args.index("--limit") + 1] == "{{ params.rows }}"
    assert "--available-now" in classify.application_args
    for task in (replay, classify):
        assert task.jars == "{{ spark_kafka_jars() }}", "the connector jars are found when the task runs"
        args = task.application_args
        assert args[args.index("--bootstrap-servers") + 1] == "{{ kafka_bootstrap() }}"
        assert args[args.index("--topic") + 1] == "{{ params.topic }}"
    args = classify.application_args
    assert args[args.index("--keyspace") + 1] == "{{ params.keyspace }}"
    assert args[args.index("--model") + 1] == "{{ params.model_uri }}"
    assert dag.params["model_uri"] == "models:/fraudlab_fraud_classifier@champion"


def test_streaming_replay_pace_is_a_param_passed_to_the_replay(dagbag):
    from airflow.sdk.exceptions import ParamValidationError
    from jinja2 import Template

    dag = dagbag.dags["fraud_streaming"]
    args = dag.task_dict["stream_csv_to_kafka"].application_args
    pace = args[args.index("--rows-per-second") + 1]
    # Empty or 0: --rows-per-second 0, which the replay reads as "as fast as possible".
    assert [Template(pace).render(params={"rows_per_second": n}) for n in (None, 0, 250)] == ["0", "0", "250"]
    param = dag.params.get_param("rows_per_second")
    assert param.value is None, "unpaced by default"
    assert [param.resolve(n) for n in (None, 0, 250)] == [None, 0, 250]
    for bad in (-1, 2.5, "fast"):
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_streaming_check_knows_whether_the_classifier_was_retried(dagbag):
    from fraudlab.orchestration import TRY_NUMBER_KEY, push_try_number

    dag = dagbag.dags["fraud_streaming"]
    assert push_try_number in dag.task_dict["classify_stream"].on_execute_callback
    pushed = {}
    push_try_number({"ti": SimpleNamespace(try_number=2, xcom_push=pushed.__setitem__)})
    assert pushed == {TRY_NUMBER_KEY: 2}


def test_streaming_endpoints_come_from_connections_else_the_lab_defaults(dagbag, monkeypatch):
    from fraudlab import config

    # The DAG file's own functions, as the tasks call them.
    module = SimpleNamespace(**dagbag.dags["fraud_streaming"].task_dict["check_outputs"].python_callable.__globals__)
    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CASSANDRA_DEFAULT", raising=False)
    assert module.kafka_bootstrap() == config.KAFKA_BOOTSTRAP
    assert (module.cassandra_hosts(), module.cassandra_port()) == ([config.CASSANDRA_HOST], config.CASSANDRA_PORT)
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT",
                       '{"conn_type": "kafka", "extra": {"bootstrap.servers": "kafka:19092"}}')
    monkeypatch.setenv("AIRFLOW_CONN_CASSANDRA_DEFAULT",
                       '{"conn_type": "cassandra", "host": "cassandra", "port": 9142, "schema": "fraudlab"}')
    assert module.kafka_bootstrap() == "kafka:19092"
    assert (module.cassandra_hosts(), module.cassandra_port()) == (["cassandra"], 9142)
