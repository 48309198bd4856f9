"""``fraud_streaming`` run for real: ``dag.test()`` against the real Kafka and Cassandra, Spark on local[2].

Nothing is mocked. The module gets its own transactions, alerts and dead-letter
topics and its own keyspace (the lab's schema) on the services the harness
starts (``kafka_service``, ``cassandra_service``), reaches them through the
``kafka_default``/``cassandra_default`` connections given by environment (as the
compose stack gives them), and scores with the champion that ``fraud_batch_local``
registered (``batch_local_run``). Three runs, one after the other, share the
DAG's checkpoint:

1. 1,000 rows, as fast as possible: every task succeeds and Cassandra holds
   exactly the 1,000 transactions sent, the alerts (table and topic, one record
   each) exactly those whose score reaches the threshold;
2. 1,200 rows with the classifier marked successful without running (what a
   classifier that exits 0 having written nothing looks like): the data-quality
   task fails the run, at once, naming the 200 transactions Cassandra lacks and
   the flagged ones the alerts topic lacks;
3. 1,200 rows again, paced (``rows_per_second``): the classifier continues from
   the checkpoint (run 2's unclassified messages and its own, not run 1's
   again), the check passes, Cassandra holds the 1,200 transactions once each
   and the alerts topic one alert per flagged one.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import runner

pytestmark = [pytest.mark.spark, pytest.mark.slow]

DAG_ID = "fraud_streaming"
TASKS = ("package_fraudlab", "topic_offsets_before", "stream_csv_to_kafka", "topic_offsets_after",
         "alerts_offsets_before", "classify_stream", "alerts_offsets_after", "check_outputs")
FIRST_ROWS = 1_000
MORE_ROWS = 1_200
#: Run 3's pace: two chunks of 600 rows, a second apart.
ROWS_PER_SECOND = 600
ALERT_THRESHOLD = 0.8


@dataclass
class StreamRun:
    """One ``dag.test()`` run of fraud_streaming: states and try numbers by task, its folder."""

    run_id: str
    state: str
    states: dict[str, str]
    tries: dict[str, int]
    run_dir: Path

    def report(self) -> dict:
        return json.loads((self.run_dir / "check_outputs.json").read_text())


def run_streaming(dag, conf: dict, label: str, timings: dict, mark_success_pattern: str | None = None) -> StreamRun:
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf, mark_success_pattern=mark_success_pattern)
    timings[label] = time.perf_counter() - started
    tis = dag_run.get_task_instances()
    return StreamRun(
        run_id=dag_run.run_id,
        state=str(getattr(dag_run.state, "value", dag_run.state)),
        states={ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in tis},
        tries={ti.task_id: ti.try_number for ti in tis},
        run_dir=Path(conf["data_root"]) / "runs" / DAG_ID / re.sub(r"[^A-Za-z0-9._-]+", "_", dag_run.run_id),
    )


# --------------------------------------------------------------------------- Kafka and Cassandra


def flagged_ids(keyspace: str) -> set[str]:
    """The stored transactions whose fraud_score reaches the threshold."""
    scored = cassandra_rows(keyspace, "scored_transactions", "transaction_id, fraud_score")
    return {r.transaction_id for r in scored if r.fraud_score >= ALERT_THRESHOLD}


def topic_keys(bootstrap: str, topic: str) -> list[str]:
    """The key of every message of ``topic``, from the beginning to the end offsets now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        keys, deadline = [], time.monotonic() + 120
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} back"
            for batch in consumer.poll(timeout_ms=1000).values():
                keys.extend(r.key.decode() for r in batch)
        return keys
    finally:
        consumer.close()


def cassandra_rows(keyspace: str, table: str, columns: str) -> list:
    with runner.cassandra_session(60) as session:
        return list(session.execute(f"SELECT {columns} FROM {keyspace}.{table}"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stream(kafka_service, cassandra_service, spark_kafka_jars, batch_local_run, banksim_csv, tmp_path_factory):
    """Own topics and keyspace, connections by environment, a data root; the conf of the runs."""
    suffix = uuid.uuid4().hex[:8]
    topics = {"topic": f"airflow_stream_tx_{suffix}", "alerts_topic": f"airflow_stream_alerts_{suffix}",
              "dead_letter_topic": f"airflow_stream_dlq_{suffix}"}
    keyspace = f"airflow_stream_{suffix}"
    runner.create_topics({topics["topic"]: 2, topics["alerts_topic"]: 1, topics["dead_letter_topic"]: 1})
    runner.create_keyspace(keyspace)
    connections = {
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka_service.bootstrap_servers}}),
        "AIRFLOW_CONN_CASSANDRA_DEFAULT": json.dumps(
            {"conn_type": "cassandra", "host": cassandra_service.host, "port": cassandra_service.port,
             "schema": keyspace}),
    }
    saved = {name: os.environ.get(name) for name in connections}
    os.environ.update(connections)
    data_root = tmp_path_factory.mktemp("stream-data")
    conf = {"data_root": str(data_root), "input_path": str(banksim_csv), "rows": FIRST_ROWS,
            "mlflow_tracking_uri": batch_local_run.tracking_uri, "keyspace": keyspace,
            "alert_threshold": ALERT_THRESHOLD, **topics}
    try:
        yield {"conf": conf, "keyspace": keyspace, "bootstrap": kafka_service.bootstrap_servers,
               "data_root": data_root, **topics}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        runner.delete_topics(topics.values())
        runner.drop_keyspace(keyspace)


@pytest.fixture(scope="module")
def first_run(stream, dagbag, timings) -> StreamRun:
    return run_streaming(dagbag.dags[DAG_ID], stream["conf"], f"{DAG_ID} (dag.test, {FIRST_ROWS} rows)", timings)


@pytest.fixture(scope="module")
def skipped_classifier_run(first_run, stream, dagbag, timings) -> StreamRun:
    """A larger slice, and a classifier that 'succeeds' without classifying anything."""
    conf = {**stream["conf"], "rows": MORE_ROWS}
    return run_streaming(dagbag.dags[DAG_ID], conf, f"{DAG_ID} (dag.test, classifier skipped, check fails)",
                         timings, mark_success_pattern="classify_stream")


@pytest.fixture(scope="module")
def recovery_run(skipped_classifier_run, stream, dagbag, timings) -> StreamRun:
    conf = {**stream["conf"], "rows": MORE_ROWS, "rows_per_second": ROWS_PER_SECOND}
    return run_streaming(dagbag.dags[DAG_ID], conf, f"{DAG_ID} (dag.test, {MORE_ROWS} rows paced, from the checkpoint)",
                         timings)


# --------------------------------------------------------------------------- run 1: the slice arrives


def test_run_succeeds_task_by_task(first_run):
    assert first_run.states == {task: "success" for task in TASKS}
    assert first_run.state == "success"


def test_cassandra_holds_exactly_the_transactions_sent(first_run, stream):
    metrics = json.loads((first_run.run_dir / "replay_metrics.json").read_text())
    assert metrics["rows_sent"] == FIRST_ROWS and metrics["topic"] == stream["topic"]
    assert metrics["pace"]["rows_per_second"] is None and metrics["chunks"] == 1, "unpaced by default"
    sent = topic_keys(stream["bootstrap"], stream["topic"])
    assert len(sent) == len(set(sent)) == FIRST_ROWS
    rows = cassandra_rows(stream["keyspace"], "scored_transactions", "transaction_id, fraud_score")
    assert sorted(r.transaction_id for r in rows) == sorted(sent), "each transaction sent, once, and nothing else"

    report = first_run.report()
    assert report["passed"] is True and report["failures"] == []
    assert report["transactions_sent"] == report["in_scored_transactions"] == FIRST_ROWS
    assert report["messages_in_range"] == report["rows_sent"] == FIRST_ROWS


def test_alerts_are_the_transactions_at_or_above_the_threshold(first_run, stream):
    expected = flagged_ids(stream["keyspace"])
    assert expected, f"no transaction reached {ALERT_THRESHOLD}: the alert checks would prove nothing"
    stored = [r.transaction_id for r in cassandra_rows(stream["keyspace"], "alerts_by_day", "transaction_id")]
    assert sorted(stored) == sorted(expected)
    on_topic = topic_keys(stream["bootstrap"], stream["alerts_topic"])
    assert sorted(on_topic) == sorted(expected), "one alert record per flagged transaction"
    assert first_run.report()["alerts_expected"] == first_run.report()["in_alerts_by_day"] == len(expected)


def test_check_counts_one_alert_record_per_flagged_transaction(first_run, stream):
    report = first_run.report()
    expected = len(flagged_ids(stream["keyspace"]))
    assert report["alerts_topic"] == stream["alerts_topic"]
    assert report["alert_messages_in_range"] == report["alerts_on_topic"] == report["flagged_on_topic"] == expected
    assert report["alerts_missing_on_topic"] == report["alerts_unflagged"] == []
    assert report["alerts_duplicated"] == {} and report["alerts_resent"] == 0
    assert report["alerts_of_other_transactions"] == 0
    assert report["rows_classified"] == FIRST_ROWS and report["classified_outside_range"] == 0
    assert report["classify_tries"] == 1


def test_checkpoint_is_kept_per_keyspace_and_topic(first_run, stream):
    checkpoint = stream["data_root"] / "checkpoints" / DAG_ID / stream["keyspace"] / stream["topic"]
    assert (checkpoint / "offsets").is_dir() and any((checkpoint / "commits").iterdir())


# --------------------------------------------------------------------------- run 2: rows missing -> the run fails


def test_missing_rows_fail_the_run_at_the_check(skipped_classifier_run):
    assert skipped_classifier_run.states == {**{task: "success" for task in TASKS}, "check_outputs": "failed"}
    assert skipped_classifier_run.state == "failed"
    assert skipped_classifier_run.tries["check_outputs"] == 1, "a verdict is not retried"


def test_failure_names_the_missing_transactions(skipped_classifier_run, first_run, stream):
    report = skipped_classifier_run.report()
    assert report["passed"] is False
    assert report["messages_in_range"] == report["rows_sent"] == report["transactions_sent"] == MORE_ROWS
    assert report["in_scored_transactions"] == FIRST_ROWS
    all_sent = topic_keys(stream["bootstrap"], stream["topic"])
    in_cassandra = {r.transaction_id for r in cassandra_rows(stream["keyspace"], "scored_transactions",
                                                             "transaction_id")}
    assert len(report["missing"]) == MORE_ROWS - FIRST_ROWS
    assert set(report["missing"]).isdisjoint(in_cassandra) and set(report["missing"]) <= set(all_sent)
    message = report["failures"][0]
    assert message.startswith(f"Cassandra holds {FIRST_ROWS} of the {MORE_ROWS} transactions sent; missing ids: "
                              f"{report['missing'][0]}, ")


def test_failure_names_the_flagged_transactions_the_alerts_topic_lacks(skipped_classifier_run, stream):
    report = skipped_classifier_run.report()
    # Nothing classified in this run: the flagged ones are run 1's, stored before, and not alerted again.
    flagged = flagged_ids(stream["keyspace"])
    assert report["alert_messages_in_range"] == report["alerts_on_topic"] == 0
    assert report["alerts_missing_on_topic"] == sorted(flagged) and report["flagged_on_topic"] == 0
    assert report["rows_classified"] == 0 and report["classify_tries"] == 0
    assert any(f.startswith(f"the alerts topic holds alerts for 0 of the {len(flagged)} flagged transactions")
               for f in report["failures"])


# --------------------------------------------------------------------------- run 3: the checkpoint catches up


def test_next_run_classifies_what_was_left_and_passes(recovery_run, stream):
    assert recovery_run.states == {task: "success" for task in TASKS}
    assert recovery_run.state == "success"
    progress = [json.loads(line) for line in
                (recovery_run.run_dir / "classify_progress.jsonl").read_text().splitlines()]
    # From the checkpoint: run 2's 1,200 unclassified messages and its own 1,200, not run 1's again.
    assert sum(batch["input_rows"] for batch in progress) == 2 * MORE_ROWS
    rows = cassandra_rows(stream["keyspace"], "scored_transactions", "transaction_id")
    assert len(rows) == len({r.transaction_id for r in rows}) == MORE_ROWS
    assert recovery_run.report()["passed"] is True


def test_next_run_replays_at_the_pace_asked(recovery_run):
    metrics = json.loads((recovery_run.run_dir / "replay_metrics.json").read_text())
    assert metrics["pace"]["rows_per_second"] == ROWS_PER_SECOND
    assert metrics["rows_sent"] == MORE_ROWS and metrics["chunks"] == MORE_ROWS // ROWS_PER_SECOND


def test_catching_up_classifies_both_slices_and_alerts_each_flagged_transaction_once(recovery_run, stream):
    report = recovery_run.report()
    flagged = flagged_ids(stream["keyspace"])
    # Run 2's messages and run 3's are the same slice, read in one micro-batch: the classifier scores one copy
    # of each transaction of a batch, so each flagged one is alerted once; the check counts what it read beyond
    # the range as the room for duplicates a second batch would have made.
    assert report["rows_classified"] == 2 * MORE_ROWS and report["classified_outside_range"] == MORE_ROWS
    assert report["alerts_on_topic"] == report["alert_messages_in_range"] == report["flagged_on_topic"] == len(flagged)
    assert report["alerts_duplicated"] == {} and report["alerts_resent"] == 0
    assert report["alerts_missing_on_topic"] == report["alerts_unflagged"] == [] and report["failures"] == []
