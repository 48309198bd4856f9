"""Run real Apache Kafka and Apache Cassandra on this machine without Docker.

Both run as plain JVM processes built from their Maven Central artifacts, bound to 127.0.0.1:

* Kafka 4.3 (KRaft, broker and controller in one JVM): 127.0.0.1:9092, controller 127.0.0.1:9093;
* Cassandra 5.0: CQL on 127.0.0.1:9042 (inter-node storage port 127.0.0.1:7000).

Usage, from anywhere (paths are relative to the repository root, found from this file)::

    .venv/bin/python -m services.runner fetch  [kafka] [cassandra] [spark-kafka]
    .venv/bin/python -m services.runner up     [kafka] [cassandra]
    .venv/bin/python -m services.runner down   [kafka] [cassandra]
    .venv/bin/python -m services.runner status [kafka] [cassandra]

``fetch`` runs ``mvn dependency:copy-dependencies`` on ``services/maven/<name>/pom.xml`` into
``.lab/jars/<name>/`` once and reuses the jars afterwards (again only when the pom changes or with
``--force``); ``spark-kafka`` is Spark 4.2.0's Kafka connector for ``spark.jars``.
``up`` fetches what is missing, writes the config files under ``.lab/run/<service>/``, formats
Kafka's storage on first use, starts each JVM detached in its own session, waits until Kafka
answers a metadata request and Cassandra a CQL query, then creates the topics of
``compose/kafka/topics.txt`` and applies ``compose/cassandra/schema.cql``. It is idempotent.
``down`` stops each JVM by its pid file: SIGTERM, a wait, then SIGKILL. Data stays in
``.lab/run/`` between ``down`` and ``up``; delete that folder for a clean slate.
``status`` exits 0 when every named service is running and ready, 3 otherwise.

Environment knobs (defaults in brackets): LAB_KAFKA_PORT [9092], LAB_KAFKA_CONTROLLER_PORT
[9093], LAB_KAFKA_HEAP [512m], LAB_CASSANDRA_PORT [9042], LAB_CASSANDRA_STORAGE_PORT [7000],
LAB_CASSANDRA_HEAP [768m], LAB_JAVA [$JAVA_HOME/bin/java or java on PATH]. The apps find the
services through fraudlab.config (KAFKA_BOOTSTRAP, CASSANDRA_PORT): change both together.

Python API (used by tests/services/fixtures.py): :func:`fetch`, :func:`up`, :func:`down`,
:func:`status`, :func:`wait_ready`, :func:`running_pid`, :func:`listening_sockets`,
:func:`spark_kafka_jars`, :func:`kafka_admin`, :func:`cassandra_session`, :func:`read_topics`,
:func:`apply_topics`, :func:`apply_schema`; failures raise :class:`ServiceError`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fraudlab import config
from services import supervisor

log = logging.getLogger("services.runner")

REPO_ROOT = Path(__file__).resolve().parents[1]
LAB_DIR = REPO_ROOT / ".lab"
JARS_DIR = LAB_DIR / "jars"
RUN_DIR = LAB_DIR / "run"
MAVEN_DIR = REPO_ROOT / "services" / "maven"
CONF_DIR = REPO_ROOT / "services" / "conf"
TOPICS_FILE = REPO_ROOT / "compose" / "kafka" / "topics.txt"
SCHEMA_FILE = REPO_ROOT / "compose" / "cassandra" / "schema.cql"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not a port number") from None


#: Every listener binds this address only; the lab never listens on other interfaces.
HOST = "127.0.0.1"
KAFKA_PORT = _env_int("LAB_KAFKA_PORT", 9092)
KAFKA_CONTROLLER_PORT = _env_int("LAB_KAFKA_CONTROLLER_PORT", 9093)
KAFKA_HEAP = os.environ.get("LAB_KAFKA_HEAP", "512m")
CASSANDRA_PORT = _env_int("LAB_CASSANDRA_PORT", 9042)
CASSANDRA_STORAGE_PORT = _env_int("LAB_CASSANDRA_STORAGE_PORT", 7000)
CASSANDRA_HEAP = os.environ.get("LAB_CASSANDRA_HEAP", "768m")
KEYSPACE = config.CASSANDRA_KEYSPACE

SERVICES = ("kafka", "cassandra")
FETCHABLE = ("kafka", "cassandra", "spark-kafka")
#: Seconds to wait for readiness after start, and for exit after SIGTERM (then SIGKILL).
READY_TIMEOUT = {"kafka": 120.0, "cassandra": 300.0}
STOP_TIMEOUT = {"kafka": 60.0, "cassandra": 90.0}

def cassandra_jvm_options(path: Path | None = None) -> list[str]:
    """The JVM options of services/conf/cassandra/jvm-server.options, split into arguments."""
    text = (path or CONF_DIR / "cassandra" / "jvm-server.options").read_text()
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


class ServiceError(RuntimeError):
    """A service could not be fetched, started, checked or stopped.

    ``str(error)`` is one sentence; ``detail`` holds supporting lines (e.g. the log's tail).
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class KafkaInfo:
    """How to reach the running Kafka broker."""

    bootstrap_servers: str
    host: str
    port: int
    controller_port: int
    topics: dict[str, int]
    pid: int | None
    data_dir: Path
    log_file: Path


@dataclass(frozen=True)
class CassandraInfo:
    """How to reach the running Cassandra node."""

    host: str
    port: int
    keyspace: str
    tables: tuple[str, ...]
    pid: int | None
    data_dir: Path
    log_file: Path

    @property
    def contact_points(self) -> list[str]:
        return [self.host]


@dataclass(frozen=True)
class ServiceStatus:
    """What :func:`status` found for one service."""

    name: str
    state: str  # "running" (answers its protocol), "unhealthy" (process up, no answer), "stopped"
    pid: int | None = None
    rss_mib: float | None = None
    listening: list[tuple[str, int]] = field(default_factory=list)
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def line(self) -> str:
        parts = [f"{self.name:<10} {self.state}"]
        if self.pid:
            parts.append(f"pid {self.pid}")
        if self.rss_mib is not None:
            parts.append(f"RSS {self.rss_mib:.0f} MiB")
        if self.listening:
            parts.append("listening " + ", ".join(f"{h}:{p}" for h, p in sorted(self.listening)))
        if self.detail:
            parts.append(f"({self.detail})")
        return "  ".join(parts)


# --------------------------------------------------------------------------------------------
# Paths and small helpers


def run_dir(name: str) -> Path:
    """Folder of a service's config, data, log and pid file."""
    return RUN_DIR / name


def pid_file(name: str) -> Path:
    return run_dir(name) / f"{name}.pid"


def log_file(name: str) -> Path:
    return run_dir(name) / f"{name}.log"


def jar_dir(name: str) -> Path:
    return JARS_DIR / name


def _check_names(names: Iterable[str] | None, allowed: tuple[str, ...]) -> list[str]:
    chosen = list(allowed) if not names else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in allowed]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise runner calls across processes (two pytest sessions, a shell and a test...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """Silence client libraries while polling a service that is still starting."""
    loggers = [logging.getLogger(n) for n in logger_names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, headed by its path (for error messages)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(text[-lines:])


def _java() -> str:
    candidates = [os.environ.get("LAB_JAVA", "")]
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    candidates.append(shutil.which("java") or "")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError("no java found: install OpenJDK 17 or set JAVA_HOME or LAB_JAVA")


def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _render(template: Path, target: Path, values: dict[str, object]) -> None:
    """Fill the @NAME@ placeholders of a config template and write it to the run folder."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    leftover = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if leftover:
        raise ServiceError(f"{template} has placeholders the runner does not fill: {leftover}")
    target.write_text(text)


# --------------------------------------------------------------------------------------------
# Processes: pid files, liveness, listening sockets

def running_pid(name: str) -> int | None:
    """Pid of the service's JVM if that very process is alive, else None (a stale pid file is removed)."""
    return supervisor.running_pid(pid_file(name))


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket that process `pid` listens on (:mod:`services.supervisor`)."""
    return supervisor.listening_sockets(pid)


def _spawn(name: str, cmd: list[str]) -> int:
    """Start a JVM detached (own session and process group), logging to its run folder."""
    return supervisor.spawn(cmd, pid_file(name), log_file(name), cwd=run_dir(name), keep_previous_log=True)


# --------------------------------------------------------------------------------------------
# fetch


def _pom_digest(name: str) -> str:
    return hashlib.sha256((MAVEN_DIR / name / "pom.xml").read_bytes()).hexdigest()


def is_fetched(name: str) -> bool:
    """True when .lab/jars/<name>/ holds a complete copy for the current pom."""
    stamp = jar_dir(name) / ".fetched"
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest(name)


def fetch(names: Iterable[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Copy each pom's runtime dependencies into .lab/jars/<name>/ (once; reused afterwards)."""
    chosen = _check_names(names, FETCHABLE)
    with _file_lock(LAB_DIR / "fetch.lock"):
        for name in chosen:
            target = jar_dir(name)
            if not force and is_fetched(name):
                count = len(list(target.glob("*.jar")))
                log.info("fetch %s: %d jars already in %s, reused", name, count, target)
                continue
            mvn = shutil.which("mvn")
            if mvn is None:
                raise ServiceError("Maven (mvn) is not on PATH: install it (apt-get install maven)")
            partial = JARS_DIR / f".{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            pom = MAVEN_DIR / name / "pom.xml"
            cmd = [
                mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom),
                "dependency:copy-dependencies", f"-DoutputDirectory={partial}",
            ]  # fmt: skip
            log.info("fetch %s: mvn dependency:copy-dependencies -f %s", name, pom.relative_to(REPO_ROOT))
            started = time.monotonic()
            done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
            jars = sorted(partial.glob("*.jar"))
            if done.returncode != 0 or not jars:
                errors = [ln for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln]
                reason = errors[0].replace("[ERROR] ", "") if errors else f"exit code {done.returncode}"
                raise ServiceError(
                    f"mvn could not fetch the {name} jars: {reason}", "\n".join(errors[:15])
                )
            size = sum(j.stat().st_size for j in jars) / 2**20
            (partial / ".fetched").write_text(_pom_digest(name) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
            log.info(
                "fetch %s: %d jars, %.0f MiB in %.1f s -> %s",
                name, len(jars), size, time.monotonic() - started, target,
            )  # fmt: skip
    return {name: jar_dir(name) for name in chosen}


def spark_kafka_jars() -> list[str]:
    """Absolute paths of Spark's Kafka connector jars, for `spark.jars` (fetch them first)."""
    if not is_fetched("spark-kafka"):
        raise ServiceError(
            "the spark-kafka jars are not fetched: run `python -m services.runner fetch spark-kafka`"
        )
    return [str(p) for p in sorted(jar_dir("spark-kafka").glob("*.jar"))]


# --------------------------------------------------------------------------------------------
# Kafka


def read_topics(path: Path = TOPICS_FILE) -> dict[str, int]:
    """The topic list: {name: partitions}, from lines `name partitions` (# starts a comment)."""
    topics: dict[str, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1:
            raise ServiceError(f"{path}:{number}: expected `name partitions`, got {raw.strip()!r}")
        topics[parts[0]] = int(parts[1])
    return topics


def kafka_info() -> KafkaInfo:
    return KafkaInfo(
        bootstrap_servers=f"{HOST}:{KAFKA_PORT}",
        host=HOST,
        port=KAFKA_PORT,
        controller_port=KAFKA_CONTROLLER_PORT,
        topics=read_topics(),
        pid=running_pid("kafka"),
        data_dir=run_dir("kafka") / "data",
        log_file=log_file("kafka"),
    )


def kafka_admin(timeout: float = 30.0):
    """A kafka-python admin client on the lab broker (close it after use)."""
    from kafka.admin import KafkaAdminClient

    ms = int(timeout * 1000)
    return KafkaAdminClient(
        bootstrap_servers=f"{HOST}:{KAFKA_PORT}",
        client_id="fraudlab-services-runner",
        request_timeout_ms=ms,
        bootstrap_timeout_ms=ms,  # the constructor fetches cluster metadata within this time
    )


def _kafka_probe(timeout: float = 5.0) -> str | None:
    """None when the broker answers a metadata request, else why not."""
    if not _port_open(KAFKA_PORT):
        return f"nothing listens on {HOST}:{KAFKA_PORT} yet"
    try:
        with _quiet("kafka"):
            admin = kafka_admin(timeout)
            try:
                admin.list_topics()
            finally:
                admin.close()
    except Exception as exc:  # noqa: BLE001 - any client error means "not ready yet"
        return f"metadata request failed: {exc!r}"
    return None


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id[0].isalnum():  # an id starting with "-" would read as a CLI flag
            return cluster_id


def _start_kafka() -> int:
    folder = run_dir("kafka")
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = folder / "server.properties"
    _render(
        CONF_DIR / "kafka" / "server.properties",
        props,
        {"HOST": HOST, "PORT": KAFKA_PORT, "CONTROLLER_PORT": KAFKA_CONTROLLER_PORT, "DATA_DIR": data},
    )
    java = _java()
    classpath = f"{jar_dir('kafka')}/*"
    log4j = f"-Dlog4j2.configurationFile={CONF_DIR / 'kafka' / 'log4j2.properties'}"
    if not (data / "meta.properties").exists():
        cluster_id = _new_cluster_id()
        log.info("kafka: formatting storage %s (cluster id %s)", data, cluster_id)
        fmt = [java, "-Xmx256m", log4j, "-cp", classpath, "kafka.tools.StorageTool", "format",
               "--cluster-id", cluster_id, "--config", str(props)]  # fmt: skip
        done = subprocess.run(fmt, cwd=folder, capture_output=True, text=True, timeout=180, check=False)
        (folder / "format.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise ServiceError(
                f"formatting Kafka's storage failed (exit code {done.returncode})",
                tail(folder / "format.log"),
            )
    else:
        log.info("kafka: storage %s already formatted, data kept", data)
    cmd = [
        java, "-Xms128m", f"-Xmx{KAFKA_HEAP}",
        # GC flags of Kafka's own kafka-run-class.sh
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true", log4j,
        "-cp", classpath, "kafka.Kafka", str(props),
    ]  # fmt: skip
    return _spawn("kafka", cmd)


def apply_topics() -> dict[str, int]:
    """Create the topics of compose/kafka/topics.txt that are missing; grow partition counts."""
    from kafka.admin import NewPartitions, NewTopic

    wanted = read_topics()
    admin = kafka_admin(30)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(n, num_partitions=p, replication_factor=1)
            for n, p in wanted.items()
            if n not in existing
        ]
        if missing:
            admin.create_topics(missing, timeout_ms=30_000)
        admin.wait_for_topics(list(wanted), timeout_ms=30_000)
        described = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(list(wanted))}
        grow = {n: NewPartitions(total_count=p) for n, p in wanted.items() if described.get(n, p) < p}
        if grow:
            admin.create_partitions(grow, timeout_ms=30_000)
        for name, count in described.items():
            if count > wanted[name]:
                log.warning(
                    "kafka: topic %s has %d partitions, more than the %d listed", name, count, wanted[name]
                )
    finally:
        admin.close()
    created = ", ".join(t.name for t in missing) or "none"
    listed = ", ".join(f"{n}[{p}]" for n, p in wanted.items())
    log.info("kafka: topics %s present (created: %s)", listed, created)
    return wanted


def create_topics(partitions: dict[str, int], timeout: float = 30.0) -> None:
    """Create topics (name -> partition count) on the lab broker and wait until they exist."""
    from kafka.admin import NewTopic

    ms = int(timeout * 1000)
    admin = kafka_admin(timeout)
    try:
        admin.create_topics(
            [NewTopic(name, num_partitions=count, replication_factor=1) for name, count in partitions.items()],
            timeout_ms=ms,
        )
        admin.wait_for_topics(list(partitions), timeout_ms=ms)
    finally:
        admin.close()


def delete_topics(names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics (clean-up of scratch topics): a failure is logged, never raised."""
    names = list(names)
    try:
        admin = kafka_admin(timeout)
    except Exception as exc:  # noqa: BLE001 - clean-up only: the broker may be gone already
        log.warning("kafka: could not delete topics %s: %r", names, exc)
        return
    try:
        admin.delete_topics(names, timeout_ms=int(timeout * 1000))
    except Exception as exc:  # noqa: BLE001 - clean-up only
        log.warning("kafka: could not delete topics %s: %r", names, exc)
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------
# Cassandra


def schema_tables(path: Path = SCHEMA_FILE) -> tuple[str, ...]:
    """Names of the tables the schema file creates."""
    return tuple(re.findall(r"CREATE TABLE IF NOT EXISTS\s+\w+\.(\w+)", path.read_text(), re.IGNORECASE))


def cql_statements(path: Path = SCHEMA_FILE) -> list[str]:
    """The statements of a plain CQL file (`--` comments dropped, split on `;`)."""
    text = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


def cassandra_info() -> CassandraInfo:
    return CassandraInfo(
        host=HOST,
        port=CASSANDRA_PORT,
        keyspace=KEYSPACE,
        tables=schema_tables(),
        pid=running_pid("cassandra"),
        data_dir=run_dir("cassandra") / "data",
        log_file=log_file("cassandra"),
    )


@contextlib.contextmanager
def cassandra_session(timeout: float = 10.0, keyspace: str | None = None) -> Iterator[object]:
    """A cassandra-driver session on the lab node (closed on exit), opened by fraudlab's one builder."""
    from fraudlab.io.cassandra import connect

    session = connect([HOST], CASSANDRA_PORT, keyspace, timeout)
    try:
        yield session
    finally:
        session.cluster.shutdown()


def _cassandra_probe(timeout: float = 5.0) -> str | None:
    """None when the node answers a CQL query, else why not."""
    if not _port_open(CASSANDRA_PORT):
        return f"nothing listens on {HOST}:{CASSANDRA_PORT} yet"
    try:
        with _quiet("cassandra"), cassandra_session(timeout) as session:
            session.execute("SELECT release_version FROM system.local").one()
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready yet"
        return f"CQL query failed: {exc!r}"
    return None


def _start_cassandra() -> int:
    folder = run_dir("cassandra")
    data = folder / "data"
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("triggers", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    yaml = folder / "cassandra.yaml"
    _render(
        CONF_DIR / "cassandra" / "cassandra.yaml",
        yaml,
        {"HOST": HOST, "PORT": CASSANDRA_PORT, "STORAGE_PORT": CASSANDRA_STORAGE_PORT, "DATA_DIR": data},
    )
    jamm = sorted(jar_dir("cassandra").glob("jamm-*.jar"))
    if not jamm:
        raise ServiceError(f"no jamm agent jar in {jar_dir('cassandra')}: run `fetch cassandra --force`")
    cmd = [
        # -Xms below -Xmx: the heap grows only as far as the lab's load needs (smaller RSS).
        _java(), "-Xms256m", f"-Xmx{CASSANDRA_HEAP}",
        *cassandra_jvm_options(),
        f"-javaagent:{jamm[-1]}",
        f"-Dcassandra.config=file://{yaml}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={folder / 'logs'}",
        f"-Dcassandra.triggers_dir={folder / 'triggers'}",
        f"-Dlogback.configurationFile={CONF_DIR / 'cassandra' / 'logback.xml'}",
        "-Dcassandra.unsafesystem=true",  # no fsync of system tables: a throwaway node
        "-cp", f"{jar_dir('cassandra')}/*", "org.apache.cassandra.service.CassandraDaemon",
    ]  # fmt: skip
    return _spawn("cassandra", cmd)


def apply_schema() -> tuple[str, ...]:
    """Run compose/cassandra/schema.cql (idempotent: IF NOT EXISTS everywhere)."""
    statements = cql_statements()
    with cassandra_session(timeout=60) as session:
        for statement in statements:
            session.execute(statement)
        rows = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (KEYSPACE,)
        )
        present = {row.table_name for row in rows}
    wanted = schema_tables()
    if not set(wanted) <= present:
        absent = sorted(set(wanted) - present)
        raise ServiceError(f"schema applied but tables {absent} are missing in {KEYSPACE}")
    log.info(
        "cassandra: schema applied (%d statements): %s.{%s}", len(statements), KEYSPACE, ", ".join(wanted)
    )
    return wanted


def keyspace_statements(keyspace: str) -> list[str]:
    """The schema's statements for another keyspace: the lab's tables in a keyspace of their own."""
    return [re.sub(rf"\b{re.escape(KEYSPACE)}\b", keyspace, statement) for statement in cql_statements()]


def create_keyspace(keyspace: str) -> None:
    """The lab's schema in ``keyspace`` (scratch keyspaces of tests and benchmarks)."""
    with cassandra_session(timeout=60) as session:
        for statement in keyspace_statements(keyspace):
            session.execute(statement, timeout=60)


def drop_keyspace(keyspace: str) -> None:
    """Drop ``keyspace`` if Cassandra runs (clean-up: nothing to drop when it is gone)."""
    if running_pid("cassandra") is None:
        return
    with cassandra_session(timeout=60) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)


# --------------------------------------------------------------------------------------------
# up / down / status / wait_ready

_START = {"kafka": _start_kafka, "cassandra": _start_cassandra}
_PROBE = {"kafka": _kafka_probe, "cassandra": _cassandra_probe}
_INIT = {"kafka": apply_topics, "cassandra": apply_schema}
_PORTS = {
    "kafka": lambda: [KAFKA_PORT, KAFKA_CONTROLLER_PORT],
    "cassandra": lambda: [CASSANDRA_PORT, CASSANDRA_STORAGE_PORT],
}


def service_info(name: str) -> KafkaInfo | CassandraInfo:
    return kafka_info() if name == "kafka" else cassandra_info()


def wait_ready(name: str, timeout: float | None = None) -> float:
    """Block until the service answers its protocol; returns the seconds waited.

    Raises ServiceError (with the log's tail) if the JVM exits or the timeout passes.
    """
    limit = READY_TIMEOUT[name] if timeout is None else timeout
    started = time.monotonic()
    pid = running_pid(name)
    if pid is None:
        raise ServiceError(f"{name} is not running: start it with `python -m services.runner up {name}`")
    while True:
        if running_pid(name) is None:
            returned = supervisor.exit_code(pid)
            code = "" if returned is None else f" with exit code {returned}"
            raise ServiceError(
                f"{name} (pid {pid}) exited{code} before it became ready", tail(log_file(name))
            )
        reason = _PROBE[name](5.0)
        waited = time.monotonic() - started
        if reason is None:
            return waited
        if waited > limit:
            raise ServiceError(
                f"{name} did not become ready within {limit:.0f} s: {reason}", tail(log_file(name))
            )
        time.sleep(1.0)


def up(
    names: Iterable[str] | None = None, timeout: float | None = None
) -> dict[str, KafkaInfo | CassandraInfo]:
    """Start the services (fetching jars if needed), wait until ready, apply topics and schema."""
    chosen = _check_names(names, SERVICES)
    missing = [n for n in chosen if not is_fetched(n)]
    if missing:
        fetch(missing)
    with _file_lock(RUN_DIR / "runner.lock"):
        started: dict[str, float] = {}
        try:
            # Cassandra first: it is the slower one, and both JVMs warm up side by side.
            for name in sorted(chosen, key=lambda n: n != "cassandra"):
                pid = running_pid(name)
                if pid is not None:
                    log.info("%s: already running (pid %d)", name, pid)
                    continue
                busy = [p for p in _PORTS[name]() if _port_open(p)]
                if busy:
                    raise ServiceError(
                        f"cannot start {name}: {HOST}:{busy[0]} is already taken by another process "
                        f"(stop it, or move the lab with the LAB_*_PORT variables)"
                    )
                run_dir(name).mkdir(parents=True, exist_ok=True)
                started[name] = time.monotonic()
                pid = _START[name]()
                log.info("%s: started pid %d, log %s", name, pid, log_file(name))
            for name in chosen:
                wait_ready(name, timeout)
                port = _PORTS[name]()[0]
                if name in started:
                    waited = time.monotonic() - started[name]
                    log.info("%s: ready on %s:%d after %.1f s", name, HOST, port, waited)
                else:
                    log.info("%s: already running and ready on %s:%d", name, HOST, port)
                try:
                    _INIT[name]()
                except ServiceError:
                    raise
                except Exception as exc:  # noqa: BLE001 - report client errors as one sentence
                    what = "creating the topics" if name == "kafka" else "applying the schema"
                    raise ServiceError(f"{name} is up but {what} failed: {exc!r}") from exc
        except BaseException:
            _down(list(started), quiet=True)  # leave nothing this call started behind
            raise
    return {name: service_info(name) for name in chosen}


def _down(names: list[str], quiet: bool = False) -> None:
    pids = {}
    for name in names:
        pid = running_pid(name)
        if pid is None:
            if not quiet:
                log.info("%s: not running", name)
            continue
        pids[name] = pid
    survivors = supervisor.stop_groups(pids, STOP_TIMEOUT)
    for name in pids:
        if name not in survivors:
            pid_file(name).unlink(missing_ok=True)
    if survivors:
        raise ServiceError(f"{', '.join(f'{n} (pid {pids[n]})' for n in survivors)} survived SIGKILL")


def down(names: Iterable[str] | None = None) -> None:
    """Stop the services by pid: SIGTERM to the JVM's process group, wait, then SIGKILL."""
    chosen = _check_names(names, SERVICES)
    with _file_lock(RUN_DIR / "runner.lock"):
        _down(chosen)


def status(names: Iterable[str] | None = None) -> dict[str, ServiceStatus]:
    """State of each service: running (answers its protocol), unhealthy, or stopped."""
    result = {}
    for name in _check_names(names, SERVICES):
        pid = running_pid(name)
        if pid is None:
            result[name] = ServiceStatus(name, "stopped")
            continue
        reason = _PROBE[name](3.0)
        result[name] = ServiceStatus(
            name,
            "running" if reason is None else "unhealthy",
            pid=pid,
            rss_mib=supervisor.rss_mib(pid),
            listening=listening_sockets(pid),
            detail=reason or "",
        )
    return result


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.runner",
        description="Fetch, start, stop and check the lab's Kafka and Cassandra (plain JVMs, 127.0.0.1).",
    )
    parser.add_argument("command", choices=["fetch", "up", "down", "status"])
    parser.add_argument(
        "services",
        nargs="*",
        metavar="service",
        help="kafka, cassandra (fetch also: spark-kafka); default: all of them",
    )
    parser.add_argument("--force", action="store_true", help="fetch: copy the jars again even if present")
    args = parser.parse_args(argv)
    supervisor.cli_logging()
    try:
        if args.command == "fetch":
            fetch(args.services, force=args.force)
        elif args.command == "up":
            for name, info in up(args.services).items():
                where = info.bootstrap_servers if name == "kafka" else f"{info.host}:{info.port}"
                print(f"{name}: up on {where} (pid {info.pid})")
        elif args.command == "down":
            down(args.services)
        else:
            states = status(args.services)
            for state in states.values():
                print(state.line())
            return 0 if all(s.running for s in states.values()) else 3
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
