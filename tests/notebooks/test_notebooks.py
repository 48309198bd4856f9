"""The three notebooks, executed headless on a fresh kernel against real inputs, and their committed form.

The inputs are made the way a user makes them, through the real spark-submit:
``generate_transactions`` (3,000 rows) -> ``prepare_data`` -> ``fit_model``
(``--search smoke``, a throw-away SQLite MLflow store, a gate loosened for so few
frauds) -> ``score_claims`` with the champion. ``smoke`` still fits both model
families, so the champion may be either; ``fast`` would cost about a minute more
of CPU for a better model the notebooks do not need. The streaming notebook reads the
real Kafka and Cassandra, filled by the real streaming apps:
``stream_csv_to_kafka`` replays the same CSV into a scratch transactions topic and
``classify_stream --available-now`` scores it into a scratch keyspace and a
scratch alerts topic, so concurrent runs never see each other's rows.

Each notebook runs with nbclient on a kernel spec written to a temporary
``JUPYTER_PATH`` that starts this venv's Python; its parameters cell is replaced
by the test's values, as papermill would. The checks: no error output, the
expected number of figures (``image/png`` outputs), and key numbers that the
test computes itself from the inputs (pandas on the Parquet files, the apps'
``metrics.json``/``_metrics.json``, the Kafka and Cassandra contents).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from services import runner

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = ["01_explore_transactions.ipynb", "02_model_analysis.ipynb", "03_streaming_inspection.ipynb"]

ROWS = 3_000
SEED = 7
KERNEL_NAME = "fraudlab-notebook-tests"
CELL_TIMEOUT_S = 600
SPARK_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
#: A small data set has few frauds (about 7 on the test steps): the gate here checks plumbing, not quality.
LOOSE_GATE = ["--gate", "min_average_precision=0.05", "--gate", "min_roc_auc=0.5", "--gate", "min_recall=0.05"]


# --------------------------------------------------------------------------- notebook helpers


def parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def execute(name: str, parameters: dict, kernel_name: str, save_to: Path) -> nbformat.NotebookNode:
    """Run notebook ``name`` top to bottom with ``parameters`` in place of its parameters cell.

    The executed copy is written to ``save_to`` (for a look after a failure);
    a failing cell raises nbclient's ``CellExecutionError`` with its traceback.
    """
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    (cell,) = parameters_cells(nb)
    cell.source = "# Parameters injected by tests/notebooks/test_notebooks.py\n" + "\n".join(
        f"{key} = {value!r}" for key, value in parameters.items())
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, str(save_to))
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs(nb) if o.output_type == "error"]


def figure_count(nb: nbformat.NotebookNode) -> int:
    return sum(1 for o in outputs(nb) if "image/png" in o.get("data", {}))


def printed_text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed to stdout."""
    return "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream" and o.get("name") == "stdout")


def shown_text(nb: nbformat.NotebookNode) -> str:
    """Every text/plain the notebook displayed (tables, results), plus what it printed."""
    shown = [o["data"]["text/plain"] for o in outputs(nb) if "text/plain" in o.get("data", {})]
    return printed_text(nb) + "\n".join(shown)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory) -> Iterator[str]:
    """A kernel spec that starts this venv's Python, found through a temporary JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fraudlab venv (notebook tests)",
        "language": "python",
        # Loopback binding and quiet Spark logs in the kernel's own Spark driver.
        "env": {"SPARK_LOCAL_IP": "127.0.0.1", "FRAUDLAB_SPARK_LOG_LEVEL": "ERROR",
                "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(root))
        env.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        env.setenv("IPYTHONDIR", str(root / "ipython"))  # no user profile or startup files
        yield KERNEL_NAME


@dataclass(frozen=True)
class LabInputs:
    raw_csv: Path
    prepared: Path
    model_dir: Path
    scored: Path
    tracking_uri: str


def _run(spark_submit, app: str, *args: str, jars: list[str] | None = None) -> None:
    extra = ["--jars", ",".join(jars)] if jars else None
    result = spark_submit(app, *args, extra_submit_args=extra)
    assert result.returncode == 0, f"{app} failed ({result.returncode}):\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def lab_inputs(spark_submit, tmp_path_factory) -> LabInputs:
    """The batch pipeline on 3,000 generated rows, through the real spark-submit, as a user runs it."""
    root = tmp_path_factory.mktemp("lab")
    inputs = LabInputs(raw_csv=root / "raw" / "transactions.csv", prepared=root / "prepared",
                       model_dir=root / "model", scored=root / "scored",
                       tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    _run(spark_submit, "generate_transactions.py", "--rows", str(ROWS), "--seed", str(SEED),
         "--output", str(inputs.raw_csv))
    _run(spark_submit, "prepare_data.py", "--input", str(inputs.raw_csv), "--output", str(inputs.prepared),
         "--quarantine", str(root / "quarantine"))
    _run(spark_submit, "fit_model.py", "--input", str(inputs.prepared), "--model-dir", str(inputs.model_dir),
         "--search", "smoke", "--tracking-uri", inputs.tracking_uri, "--experiment", "notebook-tests", *LOOSE_GATE)
    _run(spark_submit, "score_claims.py", "--input", str(inputs.prepared), "--output", str(inputs.scored),
         "--tracking-uri", inputs.tracking_uri)
    return inputs


@pytest.fixture(scope="module")
def prepared_frame(lab_inputs) -> pd.DataFrame:
    """The prepared rows, read by pandas (not Spark), to check the notebooks' figures against."""
    return pd.read_parquet(lab_inputs.prepared)


# --------------------------------------------------------------------------- the committed notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs_and_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.outputs for c in code_cells] == [[] for _ in code_cells], "commit notebooks without outputs"
    assert [c.execution_count for c in code_cells] == [None] * len(code_cells), "commit without execution counts"
    assert len(parameters_cells(nb)) == 1
    assert parameters_cells(nb)[0].cell_type == "code"
    assert nb.metadata.kernelspec.name == "python3"  # the lab's Jupyter opens it with its default kernel


# --------------------------------------------------------------------------- 01: exploration


@pytest.mark.spark
@pytest.mark.slow
def test_explore_notebook_runs_and_draws_every_figure_with_the_data_figures(
        lab_inputs, prepared_frame, kernel_name, tmp_path):
    nb = execute("01_explore_transactions.ipynb", {
        "PREPARED_PATH": str(lab_inputs.prepared), "SAMPLE_CUSTOMER_SHARE": 1.0, "SEED": 42, "TOP_MERCHANTS": 10,
        "SPARK_MASTER": "local[2]", "SPARK_CONF": SPARK_CONF,
    }, kernel_name, tmp_path / "01.ipynb")

    assert error_outputs(nb) == []
    # category, merchant, age + gender, amount, steps, customer history
    assert figure_count(nb) == 6
    data = prepared_frame
    frauds = int(data.fraud.sum())
    printed = printed_text(nb)
    assert (f"{len(data):,} transactions, {frauds:,} frauds ({frauds / len(data):.2%}), "
            f"{data.customer.nunique():,} customers, {data.merchant.nunique()} merchants, "
            f"{data.category.nunique()} categories, steps {data.step.min()}..{data.step.max()}") in printed
    per_category = data.groupby("category").fraud.sum()
    assert f"{len(per_category)} categories, {int((per_category > 0).sum())} with frauds" in printed
    per_merchant = data.groupby("merchant").fraud.sum()
    assert f"{len(per_merchant)} merchants, {int((per_merchant > 0).sum())} with frauds" in printed
    assert f"{data.age.nunique()} age groups, {data.gender.nunique()} genders" in printed
    assert f"{data.step.nunique()} steps;" in printed


# --------------------------------------------------------------------------- 02: model analysis


@pytest.mark.spark
@pytest.mark.slow
def test_model_notebook_loads_the_champion_and_reproduces_its_test_figures(
        lab_inputs, prepared_frame, kernel_name, tmp_path):
    nb = execute("02_model_analysis.ipynb", {
        "PREPARED_PATH": str(lab_inputs.prepared), "SCORED_PATH": str(lab_inputs.scored),
        "MODEL_URI": "models:/fraudlab_fraud_classifier@champion", "TRACKING_URI": lab_inputs.tracking_uri,
        "SAMPLE_CUSTOMER_SHARE": 1.0, "SEED": 42, "TOP_ERRORS": 5, "TOP_FEATURES": 10,
        "SPARK_MASTER": "local[2]", "SPARK_CONF": SPARK_CONF,
    }, kernel_name, tmp_path / "02.ipynb")

    assert error_outputs(nb) == []
    # PR curve, alerts per day against recall, importances, score distributions, drift
    assert figure_count(nb) == 5
    training = json.loads((lab_inputs.model_dir / "metrics.json").read_text())
    scoring_run = json.loads((lab_inputs.scored / "_metrics.json").read_text())
    printed = printed_text(nb)
    version = training["mlflow"]["registered_version"]
    assert f"version {version}, {training['model_type']}, decision threshold {training['threshold']:.4f}" in printed
    # the re-scored test steps give the figures fit_model recorded
    recorded = f"average precision {training['test_average_precision']:.4f}"
    assert printed.count(recorded) == 2, printed
    confusion = training["test_confusion"]
    test_days = prepared_frame.step[prepared_frame.step >= training["steps"]["test_from"]].nunique()
    assert f"{training['test_rows']:,} test transactions over {test_days} days, {training['test_frauds']} frauds" in printed
    assert f"{confusion['fp']} false positives, {confusion['fn']} false negatives" in printed
    assert f"worst {min(5, confusion['fp'])} of {confusion['fp']} false positives" in printed
    assert f"worst {min(5, confusion['fn'])} of {confusion['fn']} false negatives" in printed
    # the drift table is the scoring run's
    assert (f"scoring run of {scoring_run['claims_processed']:,} claims with model version {version}: "
            f"{len(scoring_run['drift'])} features") in printed
    shown = shown_text(nb)
    for feature, psi in scoring_run["drift"].items():
        assert re.search(rf"{feature}\s+{psi:.6f}", shown), f"{feature} PSI {psi} not shown"


# --------------------------------------------------------------------------- 03: streaming inspection


@dataclass(frozen=True)
class StreamOutputs:
    keyspace: str
    alerts_topic: str
    scored_rows: int
    alerts: int


def run_stream(spark_submit, jars: list[str], inputs: LabInputs, root: Path, keyspace: str,
               topics: dict[str, str]) -> None:
    """The real streaming apps: replay the CSV into Kafka, then classify what is there (--available-now)."""
    _run(spark_submit, "stream_csv_to_kafka.py", "--input", str(inputs.raw_csv), "--topic", topics["transactions"],
         "--quarantine", str(root / "replay_quarantine"), jars=jars)
    _run(spark_submit, "classify_stream.py", "--model", "models:/fraudlab_fraud_classifier@champion",
         "--tracking-uri", inputs.tracking_uri, "--topic", topics["transactions"],
         "--alerts-topic", topics["alerts"], "--dead-letter-topic", topics["dead_letters"],
         "--keyspace", keyspace, "--checkpoint", str(root / "checkpoint"), "--available-now", jars=jars)


def count_rows(keyspace: str, table: str) -> int:
    with runner.cassandra_session(timeout=60, keyspace=keyspace) as session:
        return int(session.execute(f"SELECT count(*) FROM {table}", timeout=60).one()[0])


@pytest.fixture(scope="module")
def stream_outputs(lab_inputs, spark_submit, spark_kafka_jars, kafka_service, cassandra_service,
                   tmp_path_factory) -> Iterator[StreamOutputs]:
    """The 3,000 rows streamed through the real apps into a scratch keyspace and scratch topics."""
    suffix = uuid.uuid4().hex[:10]
    keyspace = f"nbtest_{suffix}"
    topics = {"transactions": f"nbtest_transactions_{suffix}", "alerts": f"nbtest_alerts_{suffix}",
              "dead_letters": f"nbtest_dlq_{suffix}"}
    runner.create_keyspace(keyspace)
    runner.create_topics({topics["transactions"]: 2, topics["alerts"]: 1, topics["dead_letters"]: 1})
    try:
        run_stream(spark_submit, spark_kafka_jars, lab_inputs, tmp_path_factory.mktemp("stream"), keyspace, topics)
        yield StreamOutputs(keyspace=keyspace, alerts_topic=topics["alerts"],
                            scored_rows=count_rows(keyspace, "scored_transactions"),
                            alerts=count_rows(keyspace, "alerts_by_day"))
    finally:
        runner.delete_topics(topics.values())
        runner.drop_keyspace(keyspace)


@pytest.mark.slow
def test_streaming_notebook_shows_the_latest_alerts_and_the_throughput(
        stream_outputs, kafka_service, cassandra_service, kernel_name, tmp_path):
    from kafka import KafkaConsumer, TopicPartition

    latest = 5
    nb = execute("03_streaming_inspection.ipynb", {
        "CASSANDRA_HOSTS": [cassandra_service.host], "CASSANDRA_PORT": cassandra_service.port,
        "KEYSPACE": stream_outputs.keyspace, "KAFKA_BOOTSTRAP": kafka_service.bootstrap_servers,
        "ALERTS_TOPIC": stream_outputs.alerts_topic, "LATEST_ALERTS": latest, "THROUGHPUT_ROWS": 100_000,
        "KAFKA_TIMEOUT_S": 30.0,
    }, kernel_name, tmp_path / "03.ipynb")

    assert error_outputs(nb) == []
    assert figure_count(nb) == 1  # throughput per minute
    assert stream_outputs.scored_rows == ROWS and stream_outputs.alerts > 0
    printed = printed_text(nb)
    assert f"{min(latest, stream_outputs.alerts)} latest alerts from {stream_outputs.keyspace}.alerts_by_day" in printed
    consumer = KafkaConsumer(bootstrap_servers=kafka_service.bootstrap_servers, group_id=None,
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(stream_outputs.alerts_topic, 0)])
        on_topic = sum(1 for _ in consumer)  # records, not offsets: transaction markers take offsets too
    finally:
        consumer.close()
    assert on_topic == stream_outputs.alerts  # one committed record per alert
    assert f"{min(latest, on_topic)} latest messages of topic {stream_outputs.alerts_topic}" in printed
    assert re.search(rf"scored transactions: {ROWS:,} in [1-9]\d* min, peak [1-9][\d,]*/min", printed), printed
    assert re.search(rf"alerts: {stream_outputs.alerts:,} in [1-9]\d* min, peak [1-9][\d,]*/min", printed), printed
