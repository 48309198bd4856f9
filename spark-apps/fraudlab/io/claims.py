"""The claims formats of the batch apps: claims to score in, scored claims out and back.

``parquet`` is prepared data (``prepare_data.py`` output); ``csv`` a BankSim file and ``json`` one
claim per line with BankSim's field names, both parsed and validated as preparation does, their
rejected rows returned for quarantine. Scored claims go out as Parquet partitioned by
``event_month``, CSV (with a header, ``reasons`` joined by ``|``) or JSON lines, and
:func:`read_scored` reads any of them back in :data:`fraudlab.schemas.SCORED_SCHEMA`.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fraudlab import schemas, scoring
from fraudlab.io.files import read_header, read_lines
from fraudlab.logs import first_line
from fraudlab.data.parsing import parse_header, parse_lines, split_valid, validate
from fraudlab.schemas import PARTITION_COLUMN, PREPARED_COLUMNS, PREPARED_SCHEMA

#: Formats claims are read in and scored claims written in.
FORMATS = ("parquet", "csv", "json")


def csv_columns(spark: SparkSession, path: str, log: logging.Logger) -> list[str] | None:
    """The columns named by a BankSim CSV input's header; None, with the reason logged, when it is unusable
    (the apps then exit 2)."""
    try:
        return parse_header(read_header(spark, path))
    except ValueError as err:  # HeaderError included
        log.error("cannot read %s: %s", path, err)
        return None


def read_prepared(spark: SparkSession, path: str) -> DataFrame:
    """Prepared data (``prepare_data.py`` output) in :data:`PREPARED_SCHEMA`; ValueError when ``path`` is not a
    Parquet data set or lacks prepared columns (a fixed schema would read them as nulls)."""
    try:
        found = spark.read.parquet(path).schema
    except Exception as err:  # noqa: BLE001  (AnalysisException, SparkException: not Parquet, no files)
        raise ValueError(f"{path} is not a Parquet data set ({first_line(err, 200)})") from None
    missing = [name for name in PREPARED_COLUMNS if name not in found.fieldNames()]
    if missing:
        raise ValueError(f"{path} lacks the prepared column(s) {', '.join(missing)}: is it prepare_data.py output?")
    return spark.read.schema(PREPARED_SCHEMA).parquet(path).select(*PREPARED_COLUMNS)


def read_claims(spark: SparkSession, path: str, fmt: str, start_date: str) -> tuple[DataFrame, DataFrame | None]:
    """``(prepared, quarantine or None)`` for the input format; HeaderError or ValueError on an unusable file."""
    if fmt == "parquet":
        return read_prepared(spark, path), None
    lines = read_lines(spark, path)
    if fmt == "csv":
        return parse_lines(lines, parse_header(read_header(spark, path)), start_date)
    return split_valid(validate(scoring.split_json_fields(lines), start_date))


def write_scored(scored: DataFrame, path: str, fmt: str) -> None:
    """Overwrite ``path`` with the scored claims in ``fmt``."""
    if fmt == "parquet":
        scored.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(path)
    elif fmt == "csv":
        scoring.flatten_scored(scored).write.mode("overwrite").option("header", True).csv(path)
    else:
        scored.write.mode("overwrite").json(path)


def read_scored(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """Scored claims in :data:`fraudlab.schemas.SCORED_SCHEMA`, whatever format they were written in.

    ValueError when ``path`` does not read as ``fmt`` (Parquet read as JSON or CSV, say): a fixed schema
    would give rows of nulls, and a report of them would look like a month without claims.
    """
    if fmt == "parquet":
        try:
            spark.read.parquet(path).schema
        except Exception as err:  # noqa: BLE001  (AnalysisException, SparkException: not Parquet, no files)
            raise ValueError(f"{path} does not read as parquet ({first_line(err, 200)})") from None
        scored = scoring.select_scored(spark.read.schema(schemas.SCORED_SCHEMA).parquet(path))
    elif fmt == "json":
        scored = scoring.select_scored(spark.read.schema(schemas.SCORED_SCHEMA).json(path))
    else:
        flat = spark.read.schema(schemas.FLAT_SCORED_SCHEMA).option("header", True).csv(path)
        scored = scoring.unflatten_scored(flat)
    unreadable = scored.where(F.col("transaction_id").isNull() | F.col("step").isNull()).limit(1)
    if not unreadable.isEmpty():
        raise ValueError(f"{path} does not read as {fmt}: rows without transaction_id or step "
                         "(is it score_claims.py output in that format?)")
    return scored

