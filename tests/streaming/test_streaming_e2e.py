"""The stream end to end against the real Kafka and Cassandra: replay, classify, crash, lose Cassandra.

Nothing is mocked. The module replays 600 generated BankSim rows (plus two bad
CSV lines, which must be quarantined, never sent) into its own transactions
topic with ``stream_csv_to_kafka.py``, then injects malformed messages with
kafka-python. Each test runs ``classify_stream.py`` through spark-submit into
its own keyspace (the lab's schema, created per test), its own alerts and
dead-letter topics and a fresh checkpoint, and then counts what arrived:

* exactly the 600 transactions in ``scored_transactions`` (by the ids sent), with
  the batch scorer's scores, though one of them was sent twice and another sent
  again with another amount (that one is a dead letter, the first message
  stands); the alerts topic holding exactly the rows whose
  ``fraud_score`` reaches the threshold; every malformed message in the
  dead-letter topic with its reason and original bytes;
* after SIGKILLs at the two points where a crash can double an alert (the
  classifier's own failpoints) and restarts from the same checkpoint: still
  exactly 600 rows, none twice, history not double counted, each alert once;
* with its checkpoint damaged, then deleted: each start refused in one line, nothing
  sent twice; ``--new-checkpoint`` starts over on purpose;
* after Cassandra goes away during the stream: the query fails (it never drops
  rows), and a restart once Cassandra is back leaves nothing missing.

Run: ``.venv/bin/python -m pytest tests/streaming/test_streaming_e2e.py``
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from fraudlab import io, scoring
from fraudlab.train import pipeline as train_pipeline
from fraudlab.data import generator
from fraudlab.config import DetectionConfig
from fraudlab.data.parsing import parse_header, parse_lines
from fraudlab.schemas import PREPARED_SCHEMA
from fraudlab.streaming import checkpoint
from services import runner
from tests.conftest import spark_submit_command

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROWS = 600
MODEL_THRESHOLD = 0.5
ALERT_THRESHOLD = DetectionConfig().alert_threshold
BAD_CSV_LINES = ["0,'C1','4','M','28007'", "3,'C1','4','M','28007','M1','28007','es_food',-2.00,0"]
APP_TIMEOUT = 900
REPO = Path(__file__).resolve().parents[2]


def _good_message(transaction_id: str) -> dict:
    return {"transaction_id": transaction_id, "step": 5, "customer": "C1093826151", "age": "4", "gender": "M",
            "zipcode_ori": "28007", "merchant": "M348934600", "zip_merchant": "28007",
            "category": "es_transportation", "amount": 4.55, "fraud": 0, "event_time": "2024-01-06T00:00:00.000Z"}


def _without(message: dict, field: str) -> dict:
    return {k: v for k, v in message.items() if k != field}


#: key -> (value bytes, the reason the dead letter must give)
MALFORMED = {
    b"bad-not-json": (b"definitely { not json", "not a JSON object"),
    b"bad-missing": (json.dumps(_without(_good_message("bad-missing"), "amount")).encode(),
                     "missing field(s): amount"),
    b"bad-type": (json.dumps({**_good_message("bad-type"), "amount": "a lot"}).encode(), "amount is not numeric"),
    b"bad-category": (json.dumps({**_good_message("bad-category"), "category": "es_casino"}).encode(),
                      "category is unknown"),
    b"bad-negative": (json.dumps({**_good_message("bad-negative"), "amount": -12.5}).encode(), "amount is negative"),
    b"bad-empty": (b"", "empty message"),
}


# --------------------------------------------------------------------------- helpers


def _jars_args(jars: list[str]) -> list[str]:
    return ["--jars", ",".join(jars)]


def read_topic(bootstrap: str, topic: str) -> list:
    """Every committed record of ``topic`` (``read_committed``), from the beginning to the end offsets at call time."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records, deadline = [], time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def cassandra_rows(keyspace: str, table: str, columns: str) -> list:
    with runner.cassandra_session(30) as session:
        return list(session.execute(f"SELECT {columns} FROM {keyspace}.{table}"))


def cassandra_execute(cql: str, params: tuple) -> None:
    with runner.cassandra_session(30) as session:
        session.execute(cql, params)


def listed_topics() -> set[str]:
    admin = runner.kafka_admin()
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir(spark, tmp_path_factory) -> Path:
    """A logistic regression fitted on other generated rows, saved as fit_model.py saves one."""
    data = generator.generate(4_000, seed=3)
    start = dt.datetime(2024, 1, 1)
    rows = [(f"train{i}", int(r.step), r.customer, r.age, r.gender, r.zipcodeOri, r.merchant, r.zipMerchant,
             r.category, float(r.amount), int(r.fraud), start + dt.timedelta(days=int(r.step)),
             (start + dt.timedelta(days=int(r.step))).strftime("%Y-%m"))
            for i, r in enumerate(data.itertuples())]
    out = tmp_path_factory.mktemp("stream_model") / "fraud_model"
    train_pipeline.save_logistic_model(spark.createDataFrame(rows, PREPARED_SCHEMA), str(out), MODEL_THRESHOLD)
    return out


@pytest.fixture(scope="module")
def replayed(spark, spark_submit, kafka_service, spark_kafka_jars, model_dir, tmp_path_factory) -> dict:
    """600 rows replayed into a fresh topic, malformed messages injected; what batch scoring makes of the rows."""
    from kafka import KafkaProducer

    root = tmp_path_factory.mktemp("stream_input")
    csv_file = root / "transactions.csv"
    generator.write_sample(csv_file, rows=ROWS, seed=11)
    with csv_file.open("ab") as out:
        out.write("".join(f"{line}\r\n" for line in BAD_CSV_LINES).encode())
    topic = f"stream_e2e_tx_{uuid.uuid4().hex[:8]}"
    runner.create_topics({topic: 2})
    try:
        done = spark_submit(
            "stream_csv_to_kafka.py", "--input", str(csv_file), "--topic", topic,
            "--bootstrap-servers", kafka_service.bootstrap_servers, "--quarantine", str(root / "quarantine"),
            extra_submit_args=_jars_args(spark_kafka_jars), timeout=APP_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((root / "quarantine" / "_metrics.json").read_text())

        header = csv_file.read_text().splitlines()[0]
        prepared, _ = parse_lines(io.read_lines(spark, str(csv_file)), parse_header(header))
        from pyspark.ml import PipelineModel

        scored = scoring.score_claims(PipelineModel.load(str(model_dir)), prepared, DetectionConfig(),
                                      MODEL_THRESHOLD).select("transaction_id", "fraud_score").collect()
        batch_scores = {r["transaction_id"]: r["fraud_score"] for r in scored}

        producer = KafkaProducer(bootstrap_servers=kafka_service.bootstrap_servers, acks="all")
        for key, (value, _) in MALFORMED.items():
            producer.send(topic, key=key, value=value)
        # Two replayed transactions again: one as it was (the same transaction: one row; the least suspect, so
        # a copy scored in a later batch sends no second alert), one with another amount under its id
        # (a dead letter; the first message stands).
        sent = [r for r in read_topic(kafka_service.bootstrap_servers, topic) if r.key.decode() in batch_scores]
        repeat = min(sent, key=lambda r: batch_scores[r.key.decode()])
        clash = next(r for r in sent if r.key != repeat.key)
        producer.send(topic, key=repeat.key, value=repeat.value)
        changed = json.loads(clash.value)
        changed["amount"] += 1.0
        producer.send(topic, key=clash.key, value=json.dumps(changed).encode())
        producer.flush(30)
        producer.close()

        yield {"topic": topic, "csv": csv_file, "metrics": metrics, "repeat": repeat.key, "clash": clash.key,
               "batch_scores": batch_scores}
    finally:
        runner.delete_topics([topic])


@pytest.fixture
def sink(cassandra_service, kafka_service, spark_submit, tmp_path) -> dict:
    """This test's keyspace (the lab's schema), alerts and dead-letter topics, checkpoint and log folder."""
    suffix = uuid.uuid4().hex[:8]
    keyspace = f"stream_e2e_{suffix}"
    runner.create_keyspace(keyspace)
    alerts, dead = f"stream_e2e_alerts_{suffix}", f"stream_e2e_dlq_{suffix}"
    runner.create_topics({alerts: 1, dead: 1})
    yield {"keyspace": keyspace, "alerts": alerts, "dead": dead, "checkpoint": tmp_path / "checkpoint",
           "bootstrap": kafka_service.bootstrap_servers, "logs": tmp_path, "submit": spark_submit}
    runner.delete_topics([alerts, dead])
    runner.drop_keyspace(keyspace)


def classifier_args(replayed: dict, sink: dict, model_dir: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--topic", replayed["topic"], "--alerts-topic", sink["alerts"],
        "--dead-letter-topic", sink["dead"], "--bootstrap-servers", sink["bootstrap"],
        "--keyspace", sink["keyspace"], "--checkpoint", str(sink["checkpoint"]),
        "--alert-threshold", str(ALERT_THRESHOLD), *extra,
    ]  # fmt: skip


def classify_available_now(replayed, sink, model_dir, jars, *extra: str) -> subprocess.CompletedProcess:
    done = sink["submit"]("classify_stream.py", *classifier_args(replayed, sink, model_dir, "--available-now", *extra),
                          extra_submit_args=_jars_args(jars), timeout=APP_TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def start_classifier(replayed, sink, model_dir, jars, log_name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    """The classifier in continuous mode, in its own process group (so a kill takes the Python driver too)."""
    log_path = sink["logs"] / log_name
    cmd = spark_submit_command("classify_stream.py",
                               *classifier_args(replayed, sink, model_dir, "--trigger-interval", "1 second", *extra),
                               extra_submit_args=_jars_args(jars))
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    return proc, log_path


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"classifier exited ({proc.returncode}) before {what}:\n{_tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log) if log else ''}")


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the classifier's own process group (spark-submit's JVM and its Python driver)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def batch_files(checkpoint: Path, folder: str) -> set[int]:
    path = checkpoint / folder
    return {int(p.name) for p in path.iterdir() if p.name.isdigit()} if path.is_dir() else set()


def scored_ids(keyspace: str) -> list[str]:
    return [r.transaction_id for r in cassandra_rows(keyspace, "scored_transactions", "transaction_id")]


def assert_every_transaction_once(replayed: dict, keyspace: str) -> dict[str, float]:
    """Exactly the replayed transactions in scored_transactions and in the history, none twice."""
    scored = cassandra_rows(keyspace, "scored_transactions", "transaction_id, fraud_score")
    ids = [r.transaction_id for r in scored]
    assert len(ids) == ROWS, f"{len(ids)} rows in scored_transactions, expected {ROWS}"
    assert set(ids) == set(replayed["batch_scores"])
    history = [r.transaction_id for r in cassandra_rows(keyspace, "customer_history", "transaction_id")]
    assert sorted(history) == sorted(ids), "customer_history must hold each transaction exactly once"
    return {r.transaction_id: r.fraud_score for r in scored}


def assert_alerts_match(sink: dict, scores: dict[str, float]) -> None:
    """The alerts topic holds exactly the transactions whose score reaches the threshold, each in one record."""
    expected = {tid for tid, score in scores.items() if score >= ALERT_THRESHOLD}
    records = read_topic(sink["bootstrap"], sink["alerts"])
    keys = sorted(r.key.decode() for r in records)
    assert expected, "the data should produce some alerts"
    assert keys == sorted(expected), "each flagged transaction once: no alert missing, none twice"
    for record in records:
        body = json.loads(record.value)
        assert body["transaction_id"] == record.key.decode()
        assert body["fraud_score"] == pytest.approx(scores[body["transaction_id"]], rel=1e-12)
        assert isinstance(body["reasons"], list)
    in_table = {r.transaction_id for r in cassandra_rows(sink["keyspace"], "alerts_by_day", "transaction_id")}
    assert in_table == expected


# --------------------------------------------------------------------------- tests


def test_replay_sends_valid_rows_and_quarantines_bad_ones(replayed, kafka_service):
    metrics = replayed["metrics"]
    assert (metrics["rows_in"], metrics["rows_sent"], metrics["rows_quarantined"]) == (ROWS + 2, ROWS, 2)
    records = read_topic(kafka_service.bootstrap_servers, replayed["topic"])
    sent = {r.key.decode() for r in records if not r.key.startswith(b"bad-")}
    assert sent == set(replayed["batch_scores"])
    assert len(records) == ROWS + len(MALFORMED) + 2  # the repeated and the clashing transaction


def test_a_replay_kafka_refuses_exits_1_and_keeps_the_earlier_quarantine(replayed, kafka_service, spark_submit,
                                                                          spark_kafka_jars):
    """The broker refuses the messages (a topic name Kafka rejects): the first replay's quarantine and its
    ``_metrics.json`` stay byte for byte, and no staging folder is left beside them."""
    quarantine = replayed["csv"].parent / "quarantine"
    before = {p.relative_to(quarantine): p.read_bytes() for p in quarantine.rglob("*") if p.is_file()}
    assert Path("_metrics.json") in before
    done = spark_submit(
        "stream_csv_to_kafka.py", "--input", str(replayed["csv"]), "--topic", "no such topic!",
        "--bootstrap-servers", kafka_service.bootstrap_servers, "--quarantine", str(quarantine),
        extra_submit_args=_jars_args(spark_kafka_jars), timeout=APP_TIMEOUT,
    )  # fmt: skip
    output = done.stdout + done.stderr  # the driver's Python lines reach spark-submit's stdout
    assert done.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR stream_csv_to_kafka:" in line]
    assert len(errors) == 1 and "sending to no such topic! at" in errors[0], output[-3000:]
    assert "InvalidTopicException" in errors[0] and "the earlier quarantine is kept" in errors[0]
    assert "Traceback" not in output
    after = {p.relative_to(quarantine): p.read_bytes() for p in quarantine.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in quarantine.parent.iterdir() if p.name.startswith(".quarantine.")] == []


def test_stream_scores_every_row_once_sends_alerts_and_dead_letters(replayed, sink, model_dir, spark_kafka_jars):
    classify_available_now(replayed, sink, model_dir, spark_kafka_jars)

    scores = assert_every_transaction_once(replayed, sink["keyspace"])
    # One micro-batch in event order: the stream's features and scores are the batch scorer's.
    mismatched = {tid for tid, score in scores.items() if abs(score - replayed["batch_scores"][tid]) > 1e-9}
    assert not mismatched, f"{len(mismatched)} stream scores differ from batch scoring"
    assert_alerts_match(sink, scores)

    dead_records = read_topic(sink["bootstrap"], sink["dead"])
    dead = {r.key: json.loads(r.value) for r in dead_records}
    assert len(dead_records) == len(dead) and set(dead) == {*MALFORMED, replayed["clash"]}
    clash = replayed["clash"].decode()
    assert dead[replayed["clash"]]["reason"].startswith(f"transaction_id {clash} was received before, at "
                                                        f"{replayed['topic']}/")
    assert dead[replayed["clash"]]["reason"].endswith("with other content: the first message stands")
    for key, (value, reason) in MALFORMED.items():
        assert reason in dead[key]["reason"]
        assert base64.b64decode(dead[key]["value_base64"]) == value
        assert dead[key]["source_topic"] == replayed["topic"]


def test_killed_where_duplicates_are_born_the_classifier_still_delivers_each_row_and_alert_once(
        replayed, sink, model_dir, spark_kafka_jars):
    """SIGKILLed at the two points of a batch where a crash can double an alert, then restarted from the
    checkpoint: between batch 1's Cassandra write and its Kafka transaction, then right after batch 2's
    Kafka transaction committed and before Spark committed the batch (the replayed batch 2 must not
    send its alerts again). Cassandra holds each transaction once and the alerts topic, read with
    ``read_committed``, each flagged transaction once: records are counted, not keys."""
    args = classifier_args(replayed, sink, model_dir, "--available-now", "--max-offsets-per-trigger", "150")
    cmd = spark_submit_command("classify_stream.py", *args, extra_submit_args=_jars_args(spark_kafka_jars))
    for point in ("after_cassandra:1", "after_kafka:2"):
        killed = subprocess.run(cmd, capture_output=True, text=True, timeout=APP_TIMEOUT, cwd=REPO,
                                env={**os.environ, "FRAUDLAB_FAILPOINT": point})
        output = killed.stdout + killed.stderr
        assert killed.returncode == -signal.SIGKILL, output[-3000:]  # spark-submit's JVM, killed by the failpoint
        batch_id = int(point.split(":")[1])
        in_flight = batch_files(sink["checkpoint"], "offsets") - batch_files(sink["checkpoint"], "commits")
        assert in_flight == {batch_id}, (point, in_flight)
        assert 0 < len(scored_ids(sink["keyspace"])) < ROWS

    done = classify_available_now(replayed, sink, model_dir, spark_kafka_jars, "--max-offsets-per-trigger", "150")

    output = done.stdout + done.stderr  # spark-submit passes the driver's stderr on to its stdout
    scores = assert_every_transaction_once(replayed, sink["keyspace"])
    assert_alerts_match(sink, scores)
    assert re.search(r"batch 2: \d+ rows", output), output[-3000:]  # the cut-off batch ran again ...
    assert "batch 2: its " in output and "were delivered before the restart: not sent again" in output  # ... once


def refused_start(replayed, sink, model_dir, jars) -> str:
    """Start the classifier on a checkpoint it must refuse: exit 2 and one ERROR line, which is returned."""
    done = sink["submit"]("classify_stream.py", *classifier_args(replayed, sink, model_dir, "--available-now"),
                          extra_submit_args=_jars_args(jars), timeout=APP_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "Py4JJavaError" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if "ERROR classify_stream:" in line]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def test_a_damaged_or_lost_checkpoint_is_refused_in_one_line_and_nothing_is_sent_twice(
        replayed, sink, model_dir, spark_kafka_jars):
    """After a run to the end, the checkpoint Spark wrote is damaged (its latest offsets file torn), then
    deleted: each start is refused in one line, exit 2, and sends nothing (a silent start from the
    earliest offset would send every alert again). ``--new-checkpoint`` then starts over on purpose,
    with the documented outcome: the same rows in Cassandra, each alert a second time."""
    classify_available_now(replayed, sink, model_dir, spark_kafka_jars)
    scores = assert_every_transaction_once(replayed, sink["keyspace"])
    alerts = [r.key for r in read_topic(sink["bootstrap"], sink["alerts"])]
    ck = sink["checkpoint"]
    assert checkpoint.inspect(str(ck)).query_id is not None  # the guard reads what this Spark wrote
    latest = ck / "offsets" / str(max(batch_files(ck, "offsets")))
    latest.write_bytes(b"\x00torn")

    error = refused_start(replayed, sink, model_dir, spark_kafka_jars)
    assert f"checkpoint {ck} is damaged: {latest} (the latest batch's offsets) does not start" in error, error
    shutil.rmtree(ck)
    error = refused_start(replayed, sink, model_dir, spark_kafka_jars)
    assert f"checkpoint {ck} is empty, but query " in error and f"from topic {replayed['topic']}" in error, error
    assert [r.key for r in read_topic(sink["bootstrap"], sink["alerts"])] == alerts
    assert not ck.exists()

    classify_available_now(replayed, sink, model_dir, spark_kafka_jars, "--new-checkpoint")
    assert assert_every_transaction_once(replayed, sink["keyspace"]) == scores
    again = Counter(r.key for r in read_topic(sink["bootstrap"], sink["alerts"]))
    assert again == Counter({key: 2 for key in alerts}), "a new start on purpose sends each alert again"


def send_messages(bootstrap: str, topic: str, ids: list[str]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for tid in ids:
        producer.send(topic, key=tid.encode(), value=json.dumps(_good_message(tid)).encode())
    producer.flush()
    producer.close()


def test_a_topic_recreated_under_the_classifier_stops_it_in_one_line_and_a_documented_restart_takes_the_new_one(
        sink, model_dir, spark_kafka_jars):
    """The transactions topic is deleted and created again while the classifier runs: its offsets went
    backwards, so the query stops (exit 1, one line saying so) instead of skipping or re-reading
    messages. The documented restart (``dags/fraud_streaming.md``: the folder and its stamp deleted)
    classifies the new topic's messages, each once, beside the old topic's rows."""
    topic = {"topic": f"stream_e2e_recreated_{uuid.uuid4().hex[:8]}"}
    old_ids, new_ids = [f"old-{i}" for i in range(30)], [f"new-{i}" for i in range(5)]
    runner.create_topics({topic["topic"]: 1})
    try:
        send_messages(sink["bootstrap"], topic["topic"], old_ids)
        proc, log = start_classifier(topic, sink, model_dir, spark_kafka_jars, "recreated.log")
        try:
            wait_for(lambda: len(scored_ids(sink["keyspace"])) == len(old_ids), 600, "the old topic's rows",
                     proc, log)
            runner.delete_topics([topic["topic"]])
            wait_for(lambda: topic["topic"] not in listed_topics(), 60, "the topic's deletion")
            runner.create_topics({topic["topic"]: 1})
            send_messages(sink["bootstrap"], topic["topic"], new_ids)
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the classifier kept running on a recreated topic:\n{_tail(log)}")
        finally:
            kill_group(proc)
        output = log.read_text(errors="replace")
        assert proc.returncode == 1, output[-3000:]
        errors = [line for line in output.splitlines() if "ERROR classify_stream:" in line]
        assert len(errors) == 1 and "failed: " in errors[0] and "data may have been lost" in errors[0], output[-3000:]
        assert "deleted and created again" in errors[0] and "stream_checkpoints" in errors[0]
        assert "Traceback" not in output and sorted(scored_ids(sink["keyspace"])) == sorted(old_ids)

        shutil.rmtree(sink["checkpoint"])
        cassandra_execute(f"DELETE FROM {sink['keyspace']}.stream_checkpoints WHERE checkpoint = %s",
                          (str(sink["checkpoint"]),))
        classify_available_now(topic, sink, model_dir, spark_kafka_jars)
        assert sorted(scored_ids(sink["keyspace"])) == sorted(old_ids + new_ids)
    finally:
        runner.delete_topics([topic["topic"]])


def test_classifier_fails_without_cassandra_and_a_restart_loses_nothing(
        replayed, sink, model_dir, spark_kafka_jars, cassandra_service):
    proc, log = start_classifier(replayed, sink, model_dir, spark_kafka_jars, "cassandra_down.log",
                                 "--max-offsets-per-trigger", "50", "--write-retry-seconds", "10")
    try:
        wait_for(lambda: 0 in batch_files(sink["checkpoint"], "commits"), 600, "the first commit", proc, log)
        runner.down(["cassandra"])
        try:
            proc.wait(timeout=300)  # retries for 10 s, then the batch and the query fail
        except subprocess.TimeoutExpired:
            pytest.fail(f"the classifier kept running without Cassandra:\n{_tail(log)}")
    finally:
        kill_group(proc)
        runner.up(["cassandra"])
    assert proc.returncode != 0
    assert "CassandraSinkError" in log.read_text(errors="replace")
    committed = max(batch_files(sink["checkpoint"], "commits"))
    assert committed < max(batch_files(sink["checkpoint"], "offsets")), "the failed batch must not be committed"

    classify_available_now(replayed, sink, model_dir, spark_kafka_jars)

    scores = assert_every_transaction_once(replayed, sink["keyspace"])
    assert_alerts_match(sink, scores)
