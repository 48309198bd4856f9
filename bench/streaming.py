"""Streaming benchmark against the real Kafka and Cassandra: classifier vs consumer, latency, replayer vs producer.

Usage:
    make bench-streaming                  # or:
    .venv/bin/python bench/streaming.py [--replay-rows 200000] [--rows 30000] [--rate 1000] \
        [--latency-seconds 20] [--trigger-interval "1 second"] [--max-offsets-per-trigger 10000] \
        [--producer-rows 2000] [--sweep-rates 2000,5000] [--sweep-seconds 30] [--model data/models/fraud_model] \
        [--output bench/results/streaming.json]

Starts Kafka and Cassandra with ``services.runner`` when they are not running
(and stops them afterwards only then). Everything it writes goes to its own
topics and its own keyspaces (the lab's schema), removed at the end. One run
measures, on one machine:

1. **csv_to_kafka_rows_per_s**: ``stream_csv_to_kafka.py`` (spark-submit,
   ``local[2]``) replaying a generated file of ``--replay-rows`` rows as fast as
   it can: rows sent divided by the app's own time from its first read to the
   last acknowledged message (CSV read, parse, validation, quarantine, Kafka
   sink; the JVM start is left out, and reported in ``csv_to_kafka_wall_rows_per_s``),
   against **row_at_a_time_producer_rows_per_s**: the original labs' loop, one
   kafka-python ``send`` + ``flush`` per CSV row (``acks=all``, as Spark's sink),
   reading and encoding the same file's rows, for ``--producer-rows`` rows.
2. **classifier_events_per_s**: ``classify_stream.py --available-now`` on a topic
   holding the first ``--rows`` of those messages (``--max-offsets-per-trigger``
   per batch, a fresh checkpoint, empty tables): rows written to Cassandra
   divided by the summed batch durations from its ``StreamingQueryListener``
   (every batch, the cold first one included; ``classifier_events_per_s_warm``
   leaves it out), against **consumer_events_per_s**: a plain kafka-python
   consumer reading the same topic from the beginning to its end offsets
   (records fetched, not decoded).
3. **latency_p50_ms / latency_p99_ms**: the classifier running with
   ``--trigger-interval`` (warmed up: the load starts after its first, empty
   batch) while ``stream_csv_to_kafka.py --rows-per-second --rate`` offers
   ``--latency-seconds`` worth of rows to a fresh topic; per row, Cassandra's
   ``WRITETIME(fraud_score)`` (set by the driver when it issues the insert)
   minus the message's Kafka timestamp, over every row; and **alert_latency_p50_ms
   / p95 / p99**: per alert read committed from the run's own alerts topic, its
   Kafka timestamp (set when the classifier sent it) minus the transaction's.
4. **sweep** and **sustainable_events_per_s**: the same at each of
   ``--sweep-rates`` for ``--sweep-seconds`` (a fresh classifier, topic and
   keyspace each, at most the file's rows); the sustainable rate is the highest
   offered rate whose p99 stayed within two trigger intervals.

Targets printed with the ratios: classifier >= half the consumer's rate; p99 <=
2x the trigger interval at the offered rate; CSV-to-Kafka >= 5x row-at-a-time.
Results go to ``bench/results/streaming.json``, with the machine's load average
(the figures mean little on a busy machine). Nothing is tuned for either side:
the apps run with their defaults, the clients with kafka-python's.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_CONF_DIR", str(REPO / "compose" / "spark"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("FRAUDLAB_SPARK_LOG_LEVEL", "ERROR")
sys.path.insert(0, str(REPO))

import pyspark  # noqa: E402

os.environ.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))

from fraudlab import config  # noqa: E402
from fraudlab.data import generator  # noqa: E402
from fraudlab.io import kafka  # noqa: E402
from fraudlab.streaming import progress  # noqa: E402
from services import runner  # noqa: E402

log = logging.getLogger("bench_streaming")
MODEL_THRESHOLD = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay-rows", type=int, default=200_000, help="rows of the file the replayer sends")
    parser.add_argument("--rows", type=int, default=30_000, help="rows the classifier and the consumer read")
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED)
    parser.add_argument("--rate", type=float, default=1_000.0, help="offered events/s in the latency run")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the offered load")
    parser.add_argument("--trigger-interval", default="1 second")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=10_000)
    parser.add_argument("--producer-rows", type=int, default=2_000, help="rows sent one at a time")
    parser.add_argument("--sweep-rates", type=lambda text: [float(r) for r in text.split(",") if r],
                        default=[2_000.0, 5_000.0],
                        help="offered rates of the sweep after the latency run, comma-separated ('' for none)")
    parser.add_argument("--sweep-seconds", type=float, default=30.0, help="length of each sweep step")
    parser.add_argument("--model", default=None, help="saved model folder (default: fit a small one here)")
    parser.add_argument("--work-dir", default=str(config.DATA_DIR / "bench" / "streaming"))
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "streaming.json"))
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- plumbing


def spark_submit(app: str, *args: str, jars: list[str], log_path: Path, background: bool = False):
    """Run a spark-app through the real spark-submit (local[2]); its output goes to ``log_path``."""
    cmd = [str(VENV_BIN / "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
           "--jars", ",".join(jars), str(REPO / "spark-apps" / app), *args]
    out = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    if background:
        return proc
    code = proc.wait()
    out.close()
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{app} exited with {code}:\n{tail}")
    return proc


def fit_model(target: Path, seed: int) -> Path:
    """A logistic regression on 20,000 other generated rows, saved as fit_model.py saves one."""
    from pyspark.sql import functions as F

    from fraudlab.train import pipeline as train_pipeline
    from fraudlab.session import build_spark

    spark = build_spark("bench_streaming_model", master="local[2]", conf={"spark.ui.enabled": "false"})
    try:
        raw = generator.generate(20_000, seed + 1).rename(
            columns={"zipcodeOri": "zipcode_ori", "zipMerchant": "zip_merchant"})
        event_time = F.timestamp_add("DAY", F.col("step"), F.lit(config.DEFAULT_START_DATE).cast("timestamp"))
        train = (spark.createDataFrame(raw)
                 .withColumn("transaction_id", F.monotonically_increasing_id().cast("string"))
                 .withColumn("event_time", event_time)
                 .withColumn("event_month", F.date_format(event_time, "yyyy-MM"))).cache()
        train_pipeline.save_logistic_model(train, str(target), MODEL_THRESHOLD)
        return target
    finally:
        spark.stop()


def topic_records(bootstrap: str, topic: str):
    """(records, seconds): every record of ``topic`` read by one plain consumer, and how long that took."""
    from kafka import TopicPartition

    started = time.perf_counter()
    consumer = kafka.consumer(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records, time.perf_counter() - started
    finally:
        consumer.close()


def row_at_a_time(csv_path: Path, bootstrap: str, topic: str, rows: int) -> tuple[int, float]:
    """The original labs' producer: each CSV row as JSON, ``send`` then ``flush``. Returns (rows, seconds)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = 0
    started = time.perf_counter()
    with csv_path.open(newline="") as handle:
        for record in csv.DictReader(handle, quotechar="'"):
            if sent >= rows:
                break
            message = {k: (v.strip("'") if isinstance(v, str) else v) for k, v in record.items()}
            producer.send(topic, key=f"{message['customer']}-{sent}".encode(), value=json.dumps(message).encode())
            producer.flush()
            sent += 1
    seconds = time.perf_counter() - started
    producer.close()
    return sent, seconds


def read_progress(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def copy_topic(bootstrap: str, records: list, topic: str, rows: int) -> int:
    """Send the first ``rows`` records (by offset, per partition) to ``topic``, same partition, same order."""
    from kafka import KafkaProducer

    by_partition: dict[int, list] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    per_partition = -(-rows // max(1, len(by_partition)))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = 0
    for partition, items in by_partition.items():
        for record in sorted(items, key=lambda r: r.offset)[:per_partition]:
            producer.send(topic, key=record.key, value=record.value, partition=partition)
            sent += 1
    producer.flush()
    producer.close()
    return sent


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def stop_app(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Stop a spark-submit app gracefully: SIGTERM to its Python driver (the query stops, the session
    closes, the JVM follows); SIGKILL to the whole process group if it lingers."""
    if proc.poll() is None:
        drivers = _children(proc.pid)
        for pid in drivers:
            os.kill(pid, signal.SIGTERM)
        if not drivers:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# --------------------------------------------------------------------------- the runs


def run(args: argparse.Namespace) -> dict:
    load_at_start = list(os.getloadavg())
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runner.fetch(["spark-kafka"])
    jars = runner.spark_kafka_jars()
    bootstrap = runner.kafka_info().bootstrap_servers
    run_id = uuid.uuid4().hex[:8]
    topics = {"replay": f"bench_replay_{run_id}", "tx": f"bench_tx_{run_id}", "lat": f"bench_lat_{run_id}",
              "rowwise": f"bench_rowwise_{run_id}", "alerts": f"bench_alerts_{run_id}", "dlq": f"bench_dlq_{run_id}",
              "lat_alerts": f"bench_lat_{run_id}_alerts"}
    keyspaces = {"throughput": f"bench_tp_{run_id}", "latency": f"bench_lat_{run_id}"}
    runner.create_topics({topics["replay"]: 2, topics["tx"]: 2, topics["lat"]: 2, topics["rowwise"]: 2,
                   topics["alerts"]: 1, topics["dlq"]: 1, topics["lat_alerts"]: 1})
    for keyspace in keyspaces.values():
        runner.create_keyspace(keyspace)
    try:
        csv_path = generator.write_sample(work / "transactions.csv", rows=args.replay_rows, seed=args.seed)
        model_dir = Path(args.model) if args.model else fit_model(work / "model", args.seed)
        log.info("data: %d rows in %s; model %s", args.replay_rows, csv_path, model_dir)

        # 1. CSV -> Kafka: the Spark replayer against one send + flush per row.
        started = time.perf_counter()
        spark_submit("stream_csv_to_kafka.py", "--input", str(csv_path), "--topic", topics["replay"],
                     "--bootstrap-servers", bootstrap, "--quarantine", str(work / "quarantine_replay"),
                     jars=jars, log_path=work / "csv_to_kafka.log")
        replay_wall = time.perf_counter() - started
        replay = json.loads((work / "quarantine_replay" / "_metrics.json").read_text())
        csv_rate = replay["rows_sent"] / replay["elapsed_seconds"]
        log.info("stream_csv_to_kafka: %d rows in %.1f s (app; read+parse %.1f s, send %.1f s) / %.1f s (wall): "
                 "%.0f rows/s", replay["rows_sent"], replay["elapsed_seconds"], replay["read_seconds"],
                 replay["send_seconds"], replay_wall, csv_rate)
        producer_rows, producer_seconds = row_at_a_time(csv_path, bootstrap, topics["rowwise"], args.producer_rows)
        producer_rate = producer_rows / producer_seconds
        log.info("row-at-a-time producer: %d rows in %.1f s: %.0f rows/s", producer_rows, producer_seconds,
                 producer_rate)

        # 2. Throughput: a plain consumer, then the classifier, on the same topic.
        replayed, replay_read_s = topic_records(bootstrap, topics["replay"])
        copy_topic(bootstrap, replayed, topics["tx"], args.rows)
        del replayed
        records, consumer_seconds = topic_records(bootstrap, topics["tx"])
        consumer_rate = len(records) / consumer_seconds
        log.info("plain consumer: %d records in %.2f s: %.0f events/s (%d records of the replay topic in %.1f s)",
                 len(records), consumer_seconds, consumer_rate, replay["rows_sent"], replay_read_s)
        progress_file = work / "throughput_progress.jsonl"
        started = time.perf_counter()
        spark_submit("classify_stream.py", "--model", str(model_dir), "--topic", topics["tx"],
                     "--alerts-topic", topics["alerts"], "--dead-letter-topic", topics["dlq"],
                     "--bootstrap-servers", bootstrap, "--keyspace", keyspaces["throughput"],
                     "--checkpoint", str(work / "checkpoint_throughput"), "--available-now",
                     "--max-offsets-per-trigger", str(args.max_offsets_per_trigger),
                     "--progress-file", str(progress_file), jars=jars, log_path=work / "classify_throughput.log")
        classify_wall = time.perf_counter() - started
        batches = [b for b in read_progress(progress_file) if b.get("rows_written")]
        written = sum(b["rows_written"] for b in batches)
        busy_s = sum(b["batch_ms"] for b in batches) / 1000
        warm = batches[1:] if len(batches) > 1 else batches
        classifier_rate = written / busy_s
        classifier_warm = sum(b["rows_written"] for b in warm) / (sum(b["batch_ms"] for b in warm) / 1000)
        log.info("classifier: %d rows in %d batches, %.1f s of batches (%.1f s wall): %.0f events/s (%.0f warm)",
                 written, len(batches), busy_s, classify_wall, classifier_rate, classifier_warm)

        # 3. Latency at a fixed offered rate, then the sweep over higher rates.
        trigger_ms = _interval_ms(args.trigger_interval)
        endpoints = {"bootstrap": bootstrap, "jars": jars, "model": model_dir, "csv": csv_path,
                     "dlq": topics["dlq"]}
        main_run = latency_run(args, endpoints, work / "latency", args.rate, args.latency_seconds,
                               topics["lat"], keyspaces["latency"])
        paced, latencies, per_batch = main_run["paced"], main_run["latencies"], main_run["batches"]
        sweep = []
        for rate in args.sweep_rates:
            name = f"{int(rate)}"
            topic, keyspace = f"{topics['lat']}_{name}", f"{keyspaces['latency']}_{name}"
            runner.create_topics({topic: 2, f"{topic}_alerts": 1})
            runner.create_keyspace(keyspace)
            topics[f"sweep_{name}"], keyspaces[f"sweep_{name}"] = topic, keyspace
            topics[f"sweep_{name}_alerts"] = f"{topic}_alerts"
            step = latency_run(args, endpoints, work / f"sweep_{name}", rate, args.sweep_seconds, topic, keyspace)
            p99 = progress.percentile(step["latencies"], 99)
            sweep.append({"offered_events_per_s": rate, "seconds": args.sweep_seconds,
                          "achieved_events_per_s": step["paced"].get("rows_per_second_sent"),
                          "latency_p50_ms": _round(progress.percentile(step["latencies"], 50)),
                          "latency_p95_ms": _round(progress.percentile(step["latencies"], 95)),
                          "latency_p99_ms": _round(p99),
                          "alert_latency_p99_ms": _round(progress.percentile(step["alert_latencies"], 99)),
                          "p99_within_two_triggers": p99 is not None and p99 <= 2 * trigger_ms,
                          "batch_medians_ms": batch_medians(step["batches"])})
            log.info("sweep: %.0f events/s offered (%s achieved) for %.0f s: p50 %s ms, p99 %s ms", rate,
                     sweep[-1]["achieved_events_per_s"], args.sweep_seconds, sweep[-1]["latency_p50_ms"],
                     sweep[-1]["latency_p99_ms"])
        steady = [step["offered_events_per_s"] for step in sweep if step["p99_within_two_triggers"]]
        if progress.percentile(latencies, 99) is not None and progress.percentile(latencies, 99) <= 2 * trigger_ms:
            steady.append(args.rate)
        result = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_at_start": load_at_start, "load_average_at_end": list(os.getloadavg())},
            "csv_to_kafka_rows_per_s": round(csv_rate, 1),
            "csv_to_kafka_rows": replay["rows_sent"],
            "csv_to_kafka_seconds": replay["elapsed_seconds"],
            "csv_to_kafka_read_parse_seconds": replay["read_seconds"],
            "csv_to_kafka_send_seconds": replay["send_seconds"],
            "csv_to_kafka_wall_rows_per_s": round(replay["rows_sent"] / replay_wall, 1),
            "row_at_a_time_producer_rows_per_s": round(producer_rate, 1),
            "row_at_a_time_producer_rows": producer_rows,
            "consumer_events_per_s": round(consumer_rate, 1),
            "consumer_events": len(records),
            "consumer_events_per_s_replay_topic": round(replay["rows_sent"] / replay_read_s, 1),
            "classifier_events_per_s": round(classifier_rate, 1),
            "classifier_events_per_s_warm": round(classifier_warm, 1),
            "classifier_wall_events_per_s": round(written / classify_wall, 1),
            "classifier_events": written,
            "classifier_batch_ms": [b["batch_ms"] for b in batches],
            # Medians over the warm batches (the first, cold one left out) of Spark's durationMs and of
            # the batch function's own steps: where a batch's time goes.
            "classifier_batch_medians_ms": batch_medians(warm),
            "offered_events_per_s": args.rate,
            "offered_events_per_s_achieved": paced.get("rows_per_second_sent"),
            "offered_max_lag_s": paced.get("max_lag_seconds"),
            "latency_events": len(latencies),
            "trigger_interval_ms": trigger_ms,
            "latency_p50_ms": _round(progress.percentile(latencies, 50)),
            "latency_p99_ms": _round(progress.percentile(latencies, 99)),
            "latency_max_ms": _round(progress.percentile(latencies, 100)),
            # To the alert on the alerts topic, per alert: what a fraud desk waits for.
            "alert_latency_events": len(main_run["alert_latencies"]),
            "alert_latency_p50_ms": _round(progress.percentile(main_run["alert_latencies"], 50)),
            "alert_latency_p95_ms": _round(progress.percentile(main_run["alert_latencies"], 95)),
            "alert_latency_p99_ms": _round(progress.percentile(main_run["alert_latencies"], 99)),
            "latency_p95_ms": _round(progress.percentile(latencies, 95)),
            "latency_batches": [{k: b.get(k) for k in ("batch_id", "input_rows", "batch_ms", "latency_p50_ms",
                                                       "latency_p99_ms", "batch_function_ms",
                                                       "duration_ms", "stages_ms")}
                                for b in per_batch],
            "latency_batch_medians_ms": batch_medians(per_batch),
            # The highest offered rate at which p99 stayed within two triggers (of the main run and the sweep).
            "sweep": sweep,
            "sustainable_events_per_s": max(steady, default=None),
        }
        result["ratios"] = {
            "classifier_over_consumer": round(classifier_rate / consumer_rate, 4),
            "p99_over_trigger_interval": round(result["latency_p99_ms"] / trigger_ms, 2)
            if result["latency_p99_ms"] is not None else None,
            "csv_to_kafka_over_row_at_a_time": round(csv_rate / producer_rate, 2),
        }
        result["targets_met"] = {
            "classifier_at_least_half_the_consumer": result["ratios"]["classifier_over_consumer"] >= 0.5,
            "p99_within_two_trigger_intervals": (result["ratios"]["p99_over_trigger_interval"] or 1e9) <= 2.0,
            "csv_to_kafka_at_least_5x_row_at_a_time": result["ratios"]["csv_to_kafka_over_row_at_a_time"] >= 5.0,
        }
        return result
    finally:
        runner.delete_topics(topics.values())
        for keyspace in keyspaces.values():
            runner.drop_keyspace(keyspace)


def latency_run(args: argparse.Namespace, endpoints: dict, work: Path, rate: float, seconds: float, topic: str,
                keyspace: str) -> dict:
    """The classifier running with ``--trigger-interval`` (warmed up: the load starts after its first, empty
    batch) while ``stream_csv_to_kafka.py --rows-per-second rate`` offers ``seconds`` worth of rows to
    ``topic``: the replay's metrics, every row's latency and the classifier's batches."""
    work.mkdir(parents=True, exist_ok=True)
    rows = int(rate * seconds)
    progress_file = work / "progress.jsonl"
    classifier = spark_submit(
        "classify_stream.py", "--model", str(endpoints["model"]), "--topic", topic,
        "--alerts-topic", f"{topic}_alerts", "--dead-letter-topic", endpoints["dlq"],
        "--bootstrap-servers", endpoints["bootstrap"], "--keyspace", keyspace,
        "--checkpoint", str(work / "checkpoint"), "--trigger-interval", args.trigger_interval,
        "--progress-file", str(progress_file), jars=endpoints["jars"], log_path=work / "classify.log",
        background=True,
    )  # fmt: skip
    try:
        _wait_until(lambda: len(read_progress(progress_file)) > 0, classifier, 600, "its first batch")
        spark_submit("stream_csv_to_kafka.py", "--input", str(endpoints["csv"]), "--topic", topic,
                     "--bootstrap-servers", endpoints["bootstrap"], "--limit", str(rows),
                     "--rows-per-second", str(rate), "--quarantine", str(work / "quarantine"),
                     jars=endpoints["jars"], log_path=work / "csv_to_kafka_paced.log")
        paced = json.loads((work / "quarantine" / "_metrics.json").read_text())
        _wait_until(lambda: sum(b.get("rows_written") or 0 for b in read_progress(progress_file)) >= paced["rows_sent"],
                    classifier, 900, f"{paced['rows_sent']} rows written")
    finally:
        stop_app(classifier)
    return {"paced": paced,
            "latencies": _latencies(endpoints["bootstrap"], topic, keyspace),
            "alert_latencies": _alert_latencies(endpoints["bootstrap"], topic, f"{topic}_alerts"),
            "batches": [b for b in read_progress(progress_file) if b.get("input_rows")]}


def batch_medians(batches: list[dict]) -> dict[str, dict[str, float]]:
    """Per-batch medians of each ``durationMs`` entry (``duration_ms``) and each step (``stages_ms``)."""
    out: dict[str, dict[str, float]] = {}
    for group in ("duration_ms", "stages_ms"):
        values: dict[str, list[float]] = {}
        for b in batches:
            for name, ms in (b.get(group) or {}).items():
                values.setdefault(name, []).append(ms)
        out[group] = {name: round(statistics.median(ms), 1) for name, ms in values.items()}
    out["batches"] = len(batches)
    return out


def _medians_line(medians: dict) -> str:
    return "; ".join(f"{group}: " + " ".join(f"{k}={v:.0f}" for k, v in medians.get(group, {}).items())
                     for group in ("duration_ms", "stages_ms")) + f" (over {medians.get('batches', 0)} batches)"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _interval_ms(interval: str) -> int:
    number, unit = interval.split()[:2]
    scale = {"ms": 1, "millisecond": 1, "milliseconds": 1, "second": 1000, "seconds": 1000, "minute": 60_000,
             "minutes": 60_000}[unit]
    return int(float(number) * scale)


def _wait_until(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"classifier exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise RuntimeError(f"classifier did not reach {what} within {timeout:.0f} s")


def _latencies(bootstrap: str, topic: str, keyspace: str) -> list[float]:
    """Per row: WRITETIME(fraud_score) (µs, set when the driver issued the insert) minus the Kafka timestamp."""
    records, _ = topic_records(bootstrap, topic)
    kafka_ms = {r.key.decode(): r.timestamp for r in records}
    with runner.cassandra_session(60) as session:
        rows = session.execute(f"SELECT transaction_id, WRITETIME(fraud_score) FROM {keyspace}.scored_transactions")
        return [row[1] / 1000.0 - kafka_ms[row[0]] for row in rows if row[0] in kafka_ms]


def _alert_latencies(bootstrap: str, topic: str, alerts_topic: str) -> list[float]:
    """Per alert (read committed): its Kafka timestamp, set when the classifier sent it in its batch's
    transaction, minus the transaction's Kafka timestamp. The transaction commits a few ms later."""
    sent = {r.key: r.timestamp for r in topic_records(bootstrap, topic)[0]}
    return [r.timestamp - sent[r.key] for r in topic_records(bootstrap, alerts_topic)[0] if r.key in sent]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "cassandra"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    started_services = [name for name in runner.SERVICES if runner.running_pid(name) is None]
    if started_services:
        log.info("starting %s for the benchmark", ", ".join(started_services))
        runner.up(started_services)
    try:
        result = run(args)
    finally:
        if started_services:
            runner.down(started_services)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    ratios, met = result["ratios"], result["targets_met"]
    log.info("classifier %.0f events/s vs plain consumer %.0f events/s: ratio %.3f (target >= 0.5: %s)",
             result["classifier_events_per_s"], result["consumer_events_per_s"], ratios["classifier_over_consumer"],
             "met" if met["classifier_at_least_half_the_consumer"] else "NOT met")
    log.info("latency at %.0f events/s offered, trigger %d ms: p50 %s ms, p99 %s ms = %s x trigger "
             "(target <= 2: %s)", result["offered_events_per_s"], result["trigger_interval_ms"],
             result["latency_p50_ms"], result["latency_p99_ms"], ratios["p99_over_trigger_interval"],
             "met" if met["p99_within_two_trigger_intervals"] else "NOT met")
    log.info("to the alert on the alerts topic (%d alerts): p50 %s ms, p95 %s ms, p99 %s ms",
             result["alert_latency_events"], result["alert_latency_p50_ms"], result["alert_latency_p95_ms"],
             result["alert_latency_p99_ms"])
    log.info("sustainable rate (p99 within two triggers): %s events/s; sweep %s", result["sustainable_events_per_s"],
             [(step["offered_events_per_s"], step["latency_p99_ms"]) for step in result["sweep"]])
    log.info("median batch, throughput run: %s", _medians_line(result["classifier_batch_medians_ms"]))
    log.info("median batch, latency run: %s", _medians_line(result["latency_batch_medians_ms"]))
    log.info("load average at start %s, at end %s", result["machine"]["load_average_at_start"],
             result["machine"]["load_average_at_end"])
    log.info("stream_csv_to_kafka %.0f rows/s vs row-at-a-time producer %.0f rows/s: %.1fx (target >= 5x: %s)",
             result["csv_to_kafka_rows_per_s"], result["row_at_a_time_producer_rows_per_s"],
             ratios["csv_to_kafka_over_row_at_a_time"],
             "met" if met["csv_to_kafka_at_least_5x_row_at_a_time"] else "NOT met")
    log.info("results written to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
