"""fraud_streaming: replay a slice into Kafka, classify it (available-now) into Cassandra, check the outputs.

Its docs (tasks, the check, the checkpoint, params) are ``fraud_streaming.md``, shown on the DAG's page in the UI.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from fraudlab import config
from fraudlab.orchestration import (
    DEFAULT_ARGS,
    ENDPOINT_MACROS,
    INPUT,
    LOCAL_PATH_PARAMS,
    RUN_DIR,
    TRY_NUMBER_KEY,
    cassandra_hosts,
    cassandra_port,
    kafka_bootstrap,
    local_input_params,
    package_task,
    path_safe,
    push_try_number,
    spark_submit,
    start_date_param,
)

DAG_ID = "fraud_streaming"
log = logging.getLogger(DAG_ID)
DETECTION = config.DetectionConfig()
#: Read here, not by Airflow: a doc_md ending in .md is opened relative to the process's folder, not this one's.
DOCS = Path(__file__).with_name(f"{DAG_ID}.md").read_text()
#: The check's Kafka client id.
CLIENT_ID = "fraud_streaming-check"
#: A Kafka topic name: its legal characters, at most 249 of them, never "." or "..". The topic is a
#: folder of the checkpoint path, so a name that climbs out of it is refused with the trigger form.
TOPIC_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,249}$"

# Run values, rendered when a task runs (RUN_DIR and INPUT as in every DAG).
REPLAY_METRICS = f"{RUN_DIR}/replay_metrics.json"
PROGRESS = f"{RUN_DIR}/classify_progress.jsonl"
CHECKPOINT = "{{ params.data_root }}/checkpoints/{{ dag.dag_id }}/{{ params.keyspace }}/{{ params.topic }}"
KAFKA = "{{ kafka_bootstrap() }}"

# The apps' flags, exactly as on the command line (--rows-per-second 0: as fast as possible).
REPLAY_ARGS = ["--input", INPUT, "--bootstrap-servers", KAFKA, "--topic", "{{ params.topic }}",
               "--limit", "{{ params.rows }}", "--rows-per-second", "{{ params.rows_per_second or 0 }}",
               "--start-date", "{{ params.start_date }}", "--quarantine", f"{RUN_DIR}/quarantine",
               "--metrics", REPLAY_METRICS]
CLASSIFY_ARGS = ["--model", "{{ params.model_uri }}", "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
                 "--alert-threshold", "{{ params.alert_threshold }}", "--bootstrap-servers", KAFKA,
                 "--topic", "{{ params.topic }}", "--alerts-topic", "{{ params.alerts_topic }}",
                 "--dead-letter-topic", "{{ params.dead_letter_topic }}", "--keyspace", "{{ params.keyspace }}",
                 "--cassandra-host", "{{ cassandra_hosts()[0] }}", "--cassandra-port", "{{ cassandra_port() }}",
                 "--checkpoint", CHECKPOINT, "--start-date", "{{ params.start_date }}", "--available-now",
                 "--progress-file", PROGRESS]


with DAG(
    dag_id=DAG_ID,
    description="replay a slice into Kafka -> classify (available-now) into Cassandra -> check Cassandra and alerts",
    doc_md=DOCS,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: the runs share the classifier's checkpoint.
    max_active_runs=1,
    tags=["fraudlab", "streaming", "spark", "kafka", "cassandra"],
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=1)},
    user_defined_filters={"path_safe": path_safe},
    user_defined_macros=ENDPOINT_MACROS,
    params={
        **local_input_params("Runs and the classifier's checkpoint are written under it."),
        "rows": Param(1000, type="integer", minimum=1, title="Rows to replay",
                      description="The slice: the first N valid rows in event order."),
        "rows_per_second": Param(None, type=["null", "integer"], minimum=0, title="Replay pace (rows per second)",
                                 description="A chunk of that many rows each second; empty or 0: at full speed."),
        "start_date": start_date_param(),
        "model_uri": Param(f"models:/{config.MODEL_NAME}@{config.CHAMPION_ALIAS}", type="string",
                           title="Model", description="models:/NAME@ALIAS in the registry, or a saved model folder."),
        "mlflow_tracking_uri": Param(config.MLFLOW_TRACKING_URI, type="string", title="MLflow tracking URI"),
        "topic": Param(config.TOPIC_TRANSACTIONS, type="string", pattern=TOPIC_PATTERN, title="Transactions topic"),
        "alerts_topic": Param(config.TOPIC_ALERTS, type="string", pattern=TOPIC_PATTERN, title="Alerts topic"),
        "dead_letter_topic": Param(config.TOPIC_DEAD_LETTER, type="string", pattern=TOPIC_PATTERN,
                                   title="Dead-letter topic"),
        "keyspace": Param(config.CASSANDRA_KEYSPACE, type="string", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$",
                          title="Cassandra keyspace", description="Must hold the lab's tables (schema.cql)."),
        "alert_threshold": Param(DETECTION.alert_threshold, type="number", exclusiveMinimum=0, maximum=1,
                                 title="Alert threshold",
                                 description="fraud_score from which a transaction is an alert."),
    },
) as dag:

    @task
    def topic_offsets(topic: str) -> dict:
        """The end offset of each partition of the topic, now (``{}`` before the topic exists)."""
        from fraudlab.io import kafka  # here, not at the top: parsing the DAG file needs no Kafka client or Spark

        offsets = kafka.end_offsets(kafka_bootstrap(), topic, CLIENT_ID)
        log.info("%s at %s: end offsets %s", topic, kafka_bootstrap(), offsets)
        return {"topic": topic, "offsets": offsets}

    @task(retry_delay=timedelta(seconds=30))
    def check_outputs(snapshots: list[dict], keyspace: str, alert_threshold: str, replay_metrics: str, progress: str,
                      report: str, ti=None) -> dict:
        """The run's transactions in scored_transactions, its alerts in alerts_by_day and on the alerts topic."""
        from airflow.sdk.exceptions import AirflowFailException

        from fraudlab.streaming import check  # here, not at the top: it imports Spark

        tries = ti.xcom_pull(task_ids="classify_stream", key=TRY_NUMBER_KEY)
        try:
            run = check.RunFacts.of(snapshots, replay_metrics, progress, tries)
            return check.run((kafka_bootstrap(), cassandra_hosts(), cassandra_port()), keyspace, run,
                             float(alert_threshold), report, CLIENT_ID)
        except check.CheckFailed as err:  # a verdict on data already written: retrying gives the same answer
            raise AirflowFailException(str(err)) from err

    package = package_task()(run_dir=RUN_DIR, paths={**LOCAL_PATH_PARAMS, "model_uri": "{{ params.model_uri }}"})
    before = topic_offsets.override(task_id="topic_offsets_before")(topic="{{ params.topic }}")
    after = topic_offsets.override(task_id="topic_offsets_after")(topic="{{ params.topic }}")
    alerts_before = topic_offsets.override(task_id="alerts_offsets_before")(topic="{{ params.alerts_topic }}")
    alerts_after = topic_offsets.override(task_id="alerts_offsets_after")(topic="{{ params.alerts_topic }}")

    replay = spark_submit("stream_csv_to_kafka", REPLAY_ARGS, package, jars="{{ spark_kafka_jars() }}")
    # --available-now: scores what the topic holds when it starts, then exits; its try number is for the check.
    classify = spark_submit("classify_stream", CLASSIFY_ARGS, package, jars="{{ spark_kafka_jars() }}",
                            on_execute_callback=push_try_number)
    verdict = check_outputs(
        snapshots=[before, after, alerts_before, alerts_after], keyspace="{{ params.keyspace }}",
        alert_threshold="{{ params.alert_threshold }}", replay_metrics=REPLAY_METRICS, progress=PROGRESS,
        report=f"{RUN_DIR}/check_outputs.json",
    )

    before >> replay >> after >> alerts_before >> classify >> alerts_after >> verdict
