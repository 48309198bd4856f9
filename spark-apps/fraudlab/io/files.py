"""Small file helpers that work on any Hadoop file system (local, HDFS, S3).

The apps write their ``_metrics.json`` next to their Spark output; going
through Hadoop's FileSystem keeps that working for ``s3://`` paths on EMR.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import SparkSession


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


def replace_folder(spark: SparkSession, path: str) -> None:
    """Delete ``path`` (recursively) if it exists, so that it is rewritten as a whole.

    Also stops the file system's ``.crc`` side files: such a folder (a month's report) is
    read by people, and no Spark job reads it back.
    """
    fs, hpath = _hadoop_path(spark, path)
    fs.setWriteChecksum(False)
    if fs.exists(hpath):
        fs.delete(hpath, True)


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
