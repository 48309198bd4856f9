"""Small file helpers that work on any Hadoop file system (local, HDFS, S3).

The apps write their ``_metrics.json`` next to their Spark output; going
through Hadoop's FileSystem keeps that working for ``s3://`` paths on EMR.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from pyspark.sql import SparkSession

from fraudlab import failpoints


class PublishError(OSError):
    """A folder could not be published (a full disk, a file system gone): its earlier version is kept.

    ``kept`` lists the folders whose publishing the failure ended (nested :func:`publishing` blocks
    each add theirs). Its text is one sentence for the log; :func:`fraudlab.cli.run` ends the app
    with it and exit 1.
    """

    def __init__(self, problem: str, kept: list[str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.kept = list(kept or [])

    def __str__(self) -> str:
        if not self.kept:
            return self.problem
        return f"{self.problem}; nothing was published: the earlier {' and '.join(self.kept)} kept as before"


#: Java exceptions of storage: the file system refused a write (``No space left on device``, ...).
_STORAGE_ERRORS = ("java.io.IOException", "org.apache.hadoop.fs.FSError")


def storage_error(err: BaseException) -> str | None:
    """The deepest storage error under ``err`` as ``class: message``; None when it is not a storage failure.

    ``err`` is a Python ``OSError`` or a Py4J error whose Java cause chain holds an ``IOException``
    (or Hadoop's ``FSError``): the root cause is the most specific (``java.io.IOException: No space
    left on device``). Any other error (a bad value, an app's own) is None: it is not the storage's.
    """
    java = getattr(err, "java_exception", None)
    if java is None:
        return f"{type(err).__name__}: {err}" if isinstance(err, OSError) else None
    found, seen = None, 0
    while java is not None and seen < 50:
        names = []
        cls = java.getClass()
        while cls is not None:
            names.append(cls.getName())
            cls = cls.getSuperclass()
        if any(name in _STORAGE_ERRORS for name in names):
            found = str(java.toString()).strip().splitlines()[0]
        java, seen = java.getCause(), seen + 1
    return found


def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(str(path))
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write ``text`` to ``path`` (overwriting), creating parent folders."""
    write_bytes(spark, path, text.encode("utf-8"))


def read_text(spark: SparkSession, path: str) -> str:
    """Read a whole small text file."""
    fs, hpath = _hadoop_path(spark, path)
    stream = fs.open(hpath)
    try:
        jvm = spark.sparkContext._jvm
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_json(spark: SparkSession, path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as pretty JSON to ``path``."""
    write_text(spark, path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(spark: SparkSession, path: str) -> dict[str, Any]:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(read_text(spark, path))


def write_bytes(spark: SparkSession, path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` (overwriting), creating parent folders."""
    fs, hpath = _hadoop_path(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(payload))
    finally:
        out.close()


def skip_checksums(spark: SparkSession, path: str) -> None:
    """Stop the file system's ``.crc`` side files for writes under ``path``'s file system.

    For folders read by people (a month's report), which no Spark job reads back.
    """
    fs, _ = _hadoop_path(spark, path)
    fs.setWriteChecksum(False)


#: A swap lock older than this belongs to a killed publish: a swap itself takes milliseconds.
STALE_LOCK_SECONDS = 60

#: Left-overs of killed publishes older than this are deleted by the next publish of the same folder.
STALE_STAGING_SECONDS = 3600


@contextmanager
def publishing(spark: SparkSession, path: str) -> Iterator[str]:
    """Write a folder whole or not at all: yield a staging folder beside ``path``, swap it in on success.

    The body writes everything into the staging folder (``<parent>/.<name>.staging-<id>``: hidden,
    so Spark's listings skip it). On a clean exit the earlier ``path`` is renamed aside, the staging
    folder renamed to ``path`` and the earlier version deleted; when the body raises, the staging
    folder is removed and ``path`` is untouched. A process killed part-way leaves ``path`` as it was
    and a stale staging folder, which a later publish of the same path deletes.

    Swaps of one path hold a lock file (``.<name>.lock``, created exclusively), so two runs that
    publish the same folder at once replace it one after the other, never into each other. On the
    local file system and HDFS each rename is atomic: a reader that opens ``path`` finds the old
    folder or the new one, never a mix. On S3 a rename is a copy; the crash guarantee still holds.
    """
    fs, final = _hadoop_path(spark, path)
    final = fs.makeQualified(final)
    parent, name = final.getParent(), final.getName()
    hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path
    run_id = uuid.uuid4().hex[:12]
    staging = hadoop_path(parent, f".{name}.staging-{run_id}")
    fs.mkdirs(staging)
    try:
        yield str(staging.toString())
    except BaseException as err:
        fs.delete(staging, True)
        if isinstance(err, PublishError):
            err.kept.append(path)
            raise
        cause = storage_error(err) if isinstance(err, Exception) else None
        if cause is not None:
            raise PublishError(f"writing the output failed: {cause}", [path]) from err
        raise
    failpoints.failpoint("before_swap", name)
    previous = hadoop_path(parent, f".{name}.previous-{run_id}")
    lock = hadoop_path(parent, f".{name}.lock")
    _acquire(fs, lock, path)
    try:
        had_previous = bool(fs.exists(final))
        if had_previous and not fs.rename(final, previous):
            raise PublishError(f"cannot move {path} aside to publish its new version")
        if not fs.rename(staging, final):
            if had_previous:
                fs.rename(previous, final)
            raise PublishError(f"cannot publish {path}: renaming {staging.toString()} failed")
    except BaseException:
        fs.delete(staging, True)
        raise
    finally:
        fs.delete(lock, False)
    fs.delete(previous, True)
    _clear_stale(fs, parent, name)


def _acquire(fs, lock, path: str, wait_seconds: float = 2 * STALE_LOCK_SECONDS) -> None:
    """Create ``lock`` exclusively, waiting while another publish holds it; break a stale one."""
    deadline = time.monotonic() + wait_seconds
    while not fs.createNewFile(lock):
        try:
            age_ms = time.time() * 1000 - fs.getFileStatus(lock).getModificationTime()
        except Exception:  # noqa: BLE001  (released between the two calls: try again)
            continue
        if age_ms > STALE_LOCK_SECONDS * 1000:
            fs.delete(lock, False)
        elif time.monotonic() > deadline:
            raise PublishError(f"cannot publish {path}: {lock.toString()} is held by another run")
        else:
            time.sleep(0.1)


def _clear_stale(fs, parent, name: str) -> None:
    """Delete the staging and set-aside folders that killed publishes of ``name`` left beside it.

    One still being written by a run publishing the same path at the same time is younger than
    :data:`STALE_STAGING_SECONDS` and is left alone.
    """
    cutoff_ms = (time.time() - STALE_STAGING_SECONDS) * 1000
    prefixes = (f".{name}.staging-", f".{name}.previous-")
    for status in fs.listStatus(parent):
        leftover = status.getPath()
        if leftover.getName().startswith(prefixes) and status.getModificationTime() < cutoff_ms:
            fs.delete(leftover, True)


def exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` exists."""
    fs, hpath = _hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def qualified(spark: SparkSession, path: str) -> str:
    """``path`` as its file system names it, absolute, with its scheme (``file:/work/data/raw``)."""
    fs, hpath = _hadoop_path(spark, path)
    return str(fs.makeQualified(hpath).toString()).rstrip("/")


def overlap(spark: SparkSession, inputs: dict[str, str | None], outputs: dict[str, str | None]) -> str | None:
    """Why an output would destroy an input: the first output flag that is, contains or lies in an input
    (``"--output data/raw contains --input data/raw/transactions.csv"``); None when all are apart."""
    def within(inner: str, outer: str) -> bool:
        return inner == outer or inner.startswith(outer + "/")

    named_in = {flag: qualified(spark, path) for flag, path in inputs.items() if path}
    for out_flag, out_path in outputs.items():
        if not out_path:
            continue
        out = qualified(spark, out_path)
        for in_flag, source in named_in.items():
            if within(source, out):
                relation = "is" if source == out else "contains"
                return f"{out_flag} {out_path} {relation} {in_flag} {inputs[in_flag]}: it would be overwritten"
            if within(out, source):
                return f"{out_flag} {out_path} lies inside {in_flag} {inputs[in_flag]}: choose a folder outside it"
    return None


def read_lines(spark: SparkSession, path: str):
    """Read text files as ``source_file``, ``line_number`` (1-based, in read order), ``raw_line``.

    CRLF and LF endings both end a line. Line numbers count over the whole input,
    header lines included, so for one file they are the file's own line numbers.
    They are derived without Python workers: ``monotonically_increasing_id`` holds
    the partition id and the position inside the partition, and one small count
    per partition gives each partition's offset.
    """
    from pyspark.sql import functions as F

    text = spark.read.text(str(path)).select(
        F.input_file_name().alias("source_file"),
        F.col("value").alias("raw_line"),
        F.spark_partition_id().alias("_part"),
        F.monotonically_increasing_id().alias("_mono"),
    )
    counts = sorted(
        (row["_part"], row["n"]) for row in text.groupBy("_part").agg(F.count(F.lit(1)).alias("n")).collect()
    )
    offsets, running = {}, 0
    for part, n in counts:
        offsets[part] = running
        running += n
    offset_map = F.create_map(*[F.lit(x) for kv in offsets.items() for x in kv]) if offsets else None
    offset = offset_map[F.col("_part")] if offset_map is not None else F.lit(0)
    position = F.col("_mono").bitwiseAND(F.lit((1 << 33) - 1))
    return text.select(
        "source_file",
        (offset + position + 1).cast("long").alias("line_number"),
        "raw_line",
    )


def read_header(spark: SparkSession, path: str) -> str:
    """The first line of the input (its header), or raise ``ValueError`` when it is empty."""
    from pyspark.errors import AnalysisException

    try:
        first = spark.read.text(str(path)).first()
    except AnalysisException as err:
        raise ValueError(f"{path} cannot be read: {err.getMessage() if hasattr(err, 'getMessage') else err}") from None
    if first is None:
        raise ValueError(f"{path} holds no lines")
    return first["value"]
