"""
# fraud_streaming

The streaming path on a slice of data, end to end and checked: replay the first `rows` transactions of
the BankSim file into Kafka, run the classifier over the topic in `--available-now` mode (it scores what
is there into Cassandra and exits), then **check that Cassandra holds every transaction this run
sent**. A missing row fails the run with the count and the missing ids.

| task | what it does |
|---|---|
| `package_fraudlab` | zips `spark-apps/fraudlab` into the run folder, shipped to Spark with `--py-files` |
| `topic_offsets_before` | the topic's end offset of every partition before the replay (kafka-python) |
| `stream_csv_to_kafka` | `stream_csv_to_kafka.py --input ... --limit <rows> --topic <topic>`: the slice, in event order, keyed by `transaction_id`; its counts in `<run>/replay_metrics.json` |
| `topic_offsets_after` | the end offsets again: `[before, after)` is what this run sent |
| `classify_stream` | `classify_stream.py --available-now --model <model_uri> --keyspace ... --checkpoint <data_root>/checkpoints/fraud_streaming/<keyspace>/<topic>` |
| `check_cassandra` | the data-quality check below; its verdict in `<run>/check_cassandra.json` |

## The check: what this run sent, in Cassandra
The topic is shared (other runs, a running classifier, a producer of your own may write to it), so
"what this run sent" is the messages between the two offset snapshots taken around the replay.
`check_cassandra` reads exactly that range back from Kafka (at most a few thousand small messages for
a slice) and then requires:

- the range holds at least the `rows_sent` the replay reported (more only when a retried replay sent
  the slice twice, or someone else wrote in between: those messages are checked too);
- every `transaction_id` of the range is in `scored_transactions` (read per customer, its partition
  key), and every one whose stored `fraud_score` reaches `alert_threshold` is in `alerts_by_day`.

Ids are the SHA-256 of the row, so replaying the same slice again writes the same Cassandra rows
(an upsert); the check counts distinct ids and is true as long as each one sent arrived. A message
that is not a transaction (someone else's malformed message in the range; the classifier
dead-letters it) is listed in the report and not required in Cassandra. A failed check is a verdict,
not an accident: the task fails at once, without retries (a lost connection is retried).

`topic_offsets_after` runs before `classify_stream` on purpose: an available-now query processes
everything in the topic when it starts, so it covers the whole range.

## Checkpoint: one per keyspace and topic, kept across runs
`<data_root>/checkpoints/fraud_streaming/<keyspace>/<topic>` records how far the topic has been
classified into that keyspace. Each run continues where the last one stopped (it classifies its own
slice and anything left unclassified before it, not the whole topic again), a run whose classifier
failed half-way is completed by the next one, and a new keyspace starts from the beginning of the
topic, so its customer history is complete. A per-run checkpoint would make every run read the
topic from its first offset: the check would still hold, at the cost of classifying everything again.
Do not share the folder with a classifier running outside Airflow (give that one its own `--checkpoint`). If the
topic is deleted and created again, delete the checkpoint folder too (the query refuses offsets that
went backwards).

## Params (the trigger form)
- `data_root`: runs and checkpoints go under it (default: `FRAUDLAB_DATA`, else the checkout's `data/`).
- `input_path`: the BankSim CSV (file or folder); empty means `<data_root>/raw/transactions.csv`.
- `rows`: the slice: the first N valid rows in event order (`--limit`).
- `start_date`: the date of step 0.
- `model_uri`: `models:/fraudlab_fraud_classifier@champion` (the registry's champion) or a saved
  model folder; `mlflow_tracking_uri`: the registry it is read from.
- `topic`, `alerts_topic`, `dead_letter_topic`: the Kafka topics; `keyspace`: the Cassandra keyspace
  (it must hold the lab's tables, `compose/cassandra/schema.cql`).
- `alert_threshold`: the `fraud_score` from which a transaction is an alert.

## Connections
- `kafka_default` (`AIRFLOW_CONN_KAFKA_DEFAULT`): the broker list in the extra's `bootstrap.servers`
  (or host and port); without it, `KAFKA_BOOTSTRAP`, else `127.0.0.1:9092`.
- `cassandra_default` (`AIRFLOW_CONN_CASSANDRA_DEFAULT`): host (comma-separated for several) and port;
  without it, `CASSANDRA_HOST`/`CASSANDRA_PORT`, else `127.0.0.1:9042`.
- `spark_default`, as for the batch DAGs. Spark's Kafka connector jars are passed with `--jars` from
  `.lab/jars/spark-kafka/` when that folder holds them (`python -m services.runner fetch spark-kafka`);
  otherwise Spark must have them in its own `jars/` (the lab's images do).

Per run, under `<data_root>/runs/fraud_streaming/<run_id>/`: `fraudlab.zip`, `quarantine/` (rows the
replay rejected), `replay_metrics.json`, `classify_progress.jsonl`, `check_cassandra.json`.
One run at a time (the checkpoint is shared).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from fraudlab import config
from fraudlab.orchestration import (
    DEFAULT_ARGS,
    INPUT,
    RUN_DIR,
    cassandra_hosts,
    cassandra_port,
    kafka_bootstrap,
    package_task,
    path_safe,
    spark_kafka_jars,
    spark_submit,
)

DAG_ID = "fraud_streaming"
log = logging.getLogger(DAG_ID)
DETECTION = config.DetectionConfig()
#: The check's Kafka client id.
CLIENT_ID = "fraud_streaming-check"

# Run values, rendered when a task runs (RUN_DIR and INPUT as in every DAG).
QUARANTINE = f"{RUN_DIR}/quarantine"
REPLAY_METRICS = f"{RUN_DIR}/replay_metrics.json"
CHECKPOINT = "{{ params.data_root }}/checkpoints/{{ dag.dag_id }}/{{ params.keyspace }}/{{ params.topic }}"
KAFKA = "{{ kafka_bootstrap() }}"

# The apps' flags, exactly as on the command line.
REPLAY_ARGS = ["--input", INPUT, "--bootstrap-servers", KAFKA, "--topic", "{{ params.topic }}",
               "--limit", "{{ params.rows }}", "--start-date", "{{ params.start_date }}",
               "--quarantine", QUARANTINE, "--metrics", REPLAY_METRICS]
CLASSIFY_ARGS = ["--model", "{{ params.model_uri }}", "--tracking-uri", "{{ params.mlflow_tracking_uri }}",
                 "--alert-threshold", "{{ params.alert_threshold }}",
                 "--bootstrap-servers", KAFKA, "--topic", "{{ params.topic }}",
                 "--alerts-topic", "{{ params.alerts_topic }}", "--dead-letter-topic", "{{ params.dead_letter_topic }}",
                 "--cassandra-host", "{{ cassandra_hosts()[0] }}", "--cassandra-port", "{{ cassandra_port() }}",
                 "--keyspace", "{{ params.keyspace }}", "--checkpoint", CHECKPOINT,
                 "--start-date", "{{ params.start_date }}", "--available-now",
                 "--progress-file", f"{RUN_DIR}/classify_progress.jsonl"]


with DAG(
    dag_id=DAG_ID,
    description="replay a slice into Kafka -> classify (available-now) into Cassandra -> check Cassandra",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # One run at a time: the runs share the classifier's checkpoint.
    max_active_runs=1,
    tags=["fraudlab", "streaming", "spark", "kafka", "cassandra"],
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=1)},
    user_defined_filters={"path_safe": path_safe},
    user_defined_macros={"kafka_bootstrap": kafka_bootstrap, "cassandra_hosts": cassandra_hosts,
                         "cassandra_port": cassandra_port, "spark_kafka_jars": spark_kafka_jars},
    params={
        "data_root": Param(str(config.DATA_DIR), type="string", title="Data root",
                           description="Runs and the classifier's checkpoint are written under it."),
        "input_path": Param(None, type=["null", "string"], title="Input CSV",
                            description="BankSim CSV file or folder; empty: <data_root>/raw/transactions.csv."),
        "rows": Param(1000, type="integer", minimum=1, title="Rows to replay",
                      description="The slice: the first N valid rows in event order."),
        "start_date": Param(config.DEFAULT_START_DATE, type="string", format="date", title="Date of step 0"),
        "model_uri": Param(f"models:/{config.MODEL_NAME}@{config.CHAMPION_ALIAS}", type="string",
                           title="Model", description="models:/NAME@ALIAS in the registry, or a saved model folder."),
        "mlflow_tracking_uri": Param(config.MLFLOW_TRACKING_URI, type="string", title="MLflow tracking URI"),
        "topic": Param(config.TOPIC_TRANSACTIONS, type="string", pattern=r"^[A-Za-z0-9._-]{1,200}$",
                       title="Transactions topic"),
        "alerts_topic": Param(config.TOPIC_ALERTS, type="string", pattern=r"^[A-Za-z0-9._-]{1,200}$",
                              title="Alerts topic"),
        "dead_letter_topic": Param(config.TOPIC_DEAD_LETTER, type="string", pattern=r"^[A-Za-z0-9._-]{1,200}$",
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

        bootstrap = kafka_bootstrap()
        offsets = kafka.end_offsets(bootstrap, topic, CLIENT_ID)
        log.info("%s at %s: end offsets %s", topic, bootstrap, offsets)
        return {"topic": topic, "offsets": offsets}

    @task(retry_delay=timedelta(seconds=30))
    def check_cassandra(before: dict, after: dict, topic: str, keyspace: str, alert_threshold: str,
                        replay_metrics: str, report: str) -> dict:
        """Every transaction of this run's offset range is in scored_transactions, every alert in alerts_by_day."""
        from airflow.sdk.exceptions import AirflowFailException

        from fraudlab.streaming.check import check_run  # here, not at the top: it imports Spark

        if before["topic"] != topic or after["topic"] != topic:
            raise AirflowFailException(f"offsets were taken on {before['topic']}/{after['topic']}, not {topic}")
        rows_sent = int(json.loads(Path(replay_metrics).read_text())["rows_sent"])
        result = check_run((kafka_bootstrap(), cassandra_hosts(), cassandra_port()), topic, keyspace,
                           (before["offsets"], after["offsets"]), rows_sent, float(alert_threshold), CLIENT_ID)
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        if result["failures"]:
            # A verdict on data that is already written: retrying gives the same answer.
            raise AirflowFailException("; ".join(result["failures"]) + f" (report: {report})")
        log.info("Cassandra (keyspace %s) holds all %d transactions sent and their %d alerts",
                 keyspace, result["transactions_sent"], result["alerts_expected"])
        return {k: v for k, v in result.items() if k not in ("missing", "alerts_missing", "not_transactions")}

    package = package_task()(run_dir=RUN_DIR)
    before = topic_offsets.override(task_id="topic_offsets_before")(topic="{{ params.topic }}")
    after = topic_offsets.override(task_id="topic_offsets_after")(topic="{{ params.topic }}")

    replay = spark_submit("stream_csv_to_kafka", REPLAY_ARGS, package, jars="{{ spark_kafka_jars() }}")
    # --available-now: scores what the topic holds when it starts, then exits.
    classify = spark_submit("classify_stream", CLASSIFY_ARGS, package, jars="{{ spark_kafka_jars() }}")
    check = check_cassandra(
        before=before, after=after, topic="{{ params.topic }}", keyspace="{{ params.keyspace }}",
        alert_threshold="{{ params.alert_threshold }}", replay_metrics=REPLAY_METRICS,
        report=f"{RUN_DIR}/check_cassandra.json",
    )

    before >> replay >> after >> classify >> check
