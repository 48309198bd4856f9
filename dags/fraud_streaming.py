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
import re
import time
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, task

from fraudlab import config, packaging

DAG_ID = "fraud_streaming"
log = logging.getLogger(DAG_ID)
SPARK_APPS = config.REPO_ROOT / "spark-apps"
DETECTION = config.DetectionConfig()
KAFKA_CONN_ID = "kafka_default"
CASSANDRA_CONN_ID = "cassandra_default"
#: Where `python -m services.runner fetch spark-kafka` puts Spark's Kafka connector.
SPARK_KAFKA_JARS_DIR = config.REPO_ROOT / ".lab" / "jars" / "spark-kafka"
#: How long the check waits for Kafka to hand back the run's messages.
KAFKA_READ_TIMEOUT_S = 300
#: Missing ids named in the failure message (all of them go to check_cassandra.json).
IDS_IN_MESSAGE = 10

# Run values, rendered when a task runs.
RUN_DIR = "{{ params.data_root }}/runs/{{ dag.dag_id }}/{{ run_id | path_safe }}"
INPUT = "{{ params.input_path or params.data_root ~ '/raw/transactions.csv' }}"
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


def path_safe(value: str) -> str:
    """A run id as a folder name (no ``:`` or ``+``, which Hadoop paths reject)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value))


# --------------------------------------------------------------------------- run-time look-ups
# Called when a task runs (as template macros or from the tasks), never when the file is parsed.


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


# --------------------------------------------------------------------------- the check's parts


def _quiet_kafka_client() -> None:
    """kafka-python logs every connection at INFO: keep its warnings only in the task logs."""
    logging.getLogger("kafka").setLevel(logging.WARNING)


def end_offsets(bootstrap: str, topic: str) -> dict[str, int]:
    """``{partition: end offset}`` of ``topic`` now; ``{}`` when the topic does not exist yet."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    _quiet_kafka_client()
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 client_id="fraud_streaming-check", request_timeout_ms=30_000)
    except KafkaError as err:  # kafka-python 3: KafkaTimeoutError "Unable to bootstrap from ..."
        raise RuntimeError(f"Kafka at {bootstrap} is not reachable: {err}") from err
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return {}
        return {str(tp.partition): int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def read_range(bootstrap: str, topic: str, start: dict[str, int], end: dict[str, int],
               timeout_s: float = KAFKA_READ_TIMEOUT_S) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of every message of ``topic`` in ``[start, end)``, per partition.

    A partition missing from ``start`` (the topic was created by the replay) starts at its first offset.
    """
    from kafka import KafkaConsumer, TopicPartition

    _quiet_kafka_client()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="fraud_streaming-check", request_timeout_ms=30_000,
                             max_partition_fetch_bytes=4 * 2**20)
    try:
        wanted = {TopicPartition(topic, int(p)): int(stop) for p, stop in end.items()}
        first = consumer.beginning_offsets(list(wanted))
        bounds = {tp: (max(int(start.get(str(tp.partition), 0)), first[tp]), stop) for tp, stop in wanted.items()}
        bounds = {tp: (lo, hi) for tp, (lo, hi) in bounds.items() if lo < hi}
        if not bounds:
            return []
        consumer.assign(list(bounds))
        for tp, (lo, _) in bounds.items():
            consumer.seek(tp, lo)
        records: list[tuple[int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < hi for tp, (_, hi) in bounds.items()):
            if time.monotonic() > deadline:
                behind = {tp.partition: (consumer.position(tp), hi) for tp, (_, hi) in bounds.items()}
                raise RuntimeError(f"Kafka did not hand back the run's messages of {topic} within {timeout_s:.0f} s "
                                   f"(partition: (position, end)) {behind}")
            for tp, batch in consumer.poll(timeout_ms=1000).items():
                hi = bounds[tp][1]
                records.extend((tp.partition, r.offset, r.key, r.value) for r in batch if r.offset < hi)
        return records
    finally:
        consumer.close()


def sent_transactions(records) -> tuple[dict[str, str], list[dict]]:
    """``({transaction_id: customer}, not_transactions)`` of the messages in the range.

    A message whose value is not a JSON object with ``transaction_id`` and ``customer`` is not a
    transaction (the classifier dead-letters it); it is reported, not looked for in Cassandra.
    """
    sent: dict[str, str] = {}
    others: list[dict] = []
    for partition, offset, key, value in records:
        try:
            message = json.loads(value) if value else None
            tx_id, customer = str(message["transaction_id"]).strip(), str(message["customer"]).strip()
            if not tx_id or not customer:
                raise ValueError("blank transaction_id or customer")
        except (ValueError, TypeError, KeyError) as err:
            others.append({"partition": partition, "offset": offset,
                           "key": key.decode(errors="replace") if key else None, "problem": str(err)[:200]})
            continue
        sent[tx_id] = customer
    return sent, others


def read_cassandra(hosts: list[str], port: int, keyspace: str, sent: dict[str, str]) -> tuple[dict, set[str]]:
    """``({transaction_id: (event_time, fraud_score)} of the sent ids found in scored_transactions,
    the ids of those found in alerts_by_day)``. Reads per customer and per alert day (partition keys)."""
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent_with_args

    cluster = Cluster(hosts, port=port, protocol_version=5, connect_timeout=30, control_connection_timeout=30)
    try:
        session = cluster.connect()
        session.default_timeout = 30
        scored_cql = session.prepare(f"SELECT transaction_id, event_time, fraud_score "
                                     f"FROM {keyspace}.scored_transactions WHERE customer = ?")
        wanted = set(sent)
        found: dict[str, tuple] = {}
        customers = [(c,) for c in sorted(set(sent.values()))]
        for _, result in execute_concurrent_with_args(session, scored_cql, customers, concurrency=32,
                                                      raise_on_first_error=True):
            for row in result:
                if row.transaction_id in wanted:
                    found[row.transaction_id] = (row.event_time, row.fraud_score)
        days = sorted({event_time.date() for event_time, _ in found.values() if event_time is not None})
        alerts_cql = session.prepare(f"SELECT transaction_id FROM {keyspace}.alerts_by_day WHERE alert_date = ?")
        alerted: set[str] = set()
        for _, result in execute_concurrent_with_args(session, alerts_cql, [(d,) for d in days], concurrency=16,
                                                      raise_on_first_error=True):
            alerted.update(row.transaction_id for row in result if row.transaction_id in wanted)
        return found, alerted
    finally:
        cluster.shutdown()


def verdict(sent: dict[str, str], messages: int, rows_sent: int, found: dict, alerted: set[str],
            alert_threshold: float) -> tuple[dict, list[str]]:
    """The check's figures and its failures (empty when Cassandra holds what was sent)."""
    missing = sorted(set(sent) - set(found))
    should_alert = {t for t, (_, score) in found.items() if score is not None and score >= alert_threshold}
    alerts_missing = sorted(should_alert - alerted)
    figures = {
        "messages_in_range": messages,
        "rows_sent": rows_sent,
        "transactions_sent": len(sent),
        "in_scored_transactions": len(sent) - len(missing),
        "missing": missing,
        "alerts_expected": len(should_alert),
        "in_alerts_by_day": len(should_alert) - len(alerts_missing),
        "alerts_missing": alerts_missing,
    }
    failures = []
    if rows_sent <= 0:
        failures.append("the replay sent no transactions (an empty slice, or every row quarantined)")
    if messages < rows_sent:
        failures.append(f"Kafka holds {messages} messages in this run's offset range, the replay reports "
                        f"{rows_sent} sent")
    if missing:
        failures.append(f"Cassandra holds {len(sent) - len(missing)} of the {len(sent)} transactions sent; "
                        f"missing ids: {', '.join(missing[:IDS_IN_MESSAGE])}"
                        + (f" (and {len(missing) - IDS_IN_MESSAGE} more)" if len(missing) > IDS_IN_MESSAGE else ""))
    if alerts_missing:
        failures.append(f"alerts_by_day holds {len(should_alert) - len(alerts_missing)} of the {len(should_alert)} "
                        f"alerts (fraud_score >= {alert_threshold}); missing ids: "
                        f"{', '.join(alerts_missing[:IDS_IN_MESSAGE])}")
    return figures, failures


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
    default_args={
        "owner": "fraudlab",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=1),
    },
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
    def package_fraudlab(run_dir: str) -> str:
        """Zip the fraudlab package into the run folder; the zip goes to both Spark tasks as --py-files."""
        return packaging.zip_package(run_dir)

    @task
    def topic_offsets(topic: str) -> dict:
        """The end offset of each partition of the topic, now (``{}`` before the topic exists)."""
        bootstrap = kafka_bootstrap()
        offsets = end_offsets(bootstrap, topic)
        log.info("%s at %s: end offsets %s", topic, bootstrap, offsets)
        return {"topic": topic, "offsets": offsets}

    @task(retry_delay=timedelta(seconds=30))
    def check_cassandra(before: dict, after: dict, topic: str, keyspace: str, alert_threshold: str,
                        replay_metrics: str, report: str) -> dict:
        """Every transaction of this run's offset range is in scored_transactions, every alert in alerts_by_day."""
        from airflow.sdk.exceptions import AirflowFailException

        if before["topic"] != topic or after["topic"] != topic:
            raise AirflowFailException(f"offsets were taken on {before['topic']}/{after['topic']}, not {topic}")
        rows_sent = int(json.loads(Path(replay_metrics).read_text())["rows_sent"])
        bootstrap, hosts, port = kafka_bootstrap(), cassandra_hosts(), cassandra_port()

        records = read_range(bootstrap, topic, before["offsets"], after["offsets"])
        sent, not_transactions = sent_transactions(records)
        log.info("%s: %d messages in [%s, %s), %d distinct transactions, %d not transactions; the replay sent %d",
                 topic, len(records), before["offsets"], after["offsets"], len(sent), len(not_transactions), rows_sent)
        found, alerted = read_cassandra(hosts, port, keyspace, sent) if sent else ({}, set())
        figures, failures = verdict(sent, len(records), rows_sent, found, alerted, float(alert_threshold))
        result = {"passed": not failures, "failures": failures, "topic": topic, "keyspace": keyspace,
                  "offsets_before": before["offsets"], "offsets_after": after["offsets"], **figures,
                  "not_transactions": not_transactions}
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        if failures:
            # A verdict on data that is already written: retrying gives the same answer.
            raise AirflowFailException("; ".join(failures) + f" (report: {report})")
        log.info("Cassandra (keyspace %s) holds all %d transactions sent and their %d alerts",
                 keyspace, len(sent), figures["alerts_expected"])
        return {k: v for k, v in result.items() if k not in ("missing", "alerts_missing", "not_transactions")}

    package = package_fraudlab(run_dir=RUN_DIR)
    before = topic_offsets.override(task_id="topic_offsets_before")(topic="{{ params.topic }}")
    after = topic_offsets.override(task_id="topic_offsets_after")(topic="{{ params.topic }}")

    replay = SparkSubmitOperator(
        task_id="stream_csv_to_kafka",
        name="stream_csv_to_kafka",
        application=str(SPARK_APPS / "stream_csv_to_kafka.py"),
        application_args=REPLAY_ARGS,
        py_files=package,
        jars="{{ spark_kafka_jars() }}",
        conn_id="spark_default",
    )
    # --available-now: scores what the topic holds when it starts, then exits.
    classify = SparkSubmitOperator(
        task_id="classify_stream",
        name="classify_stream",
        application=str(SPARK_APPS / "classify_stream.py"),
        application_args=CLASSIFY_ARGS,
        py_files=package,
        jars="{{ spark_kafka_jars() }}",
        conn_id="spark_default",
    )
    check = check_cassandra(
        before=before, after=after, topic="{{ params.topic }}", keyspace="{{ params.keyspace }}",
        alert_threshold="{{ params.alert_threshold }}", replay_metrics=REPLAY_METRICS,
        report=f"{RUN_DIR}/check_cassandra.json",
    )

    before >> replay >> after >> classify >> check
