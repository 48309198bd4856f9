"""Parse and validate BankSim transactions, the same way for every entry point.

Preparation, batch scoring and the CSV-to-Kafka replay all go through here, so a
row is judged by one set of rules wherever it enters. Input comes as it does in
the wild: the public Kaggle file (single quotes, CRLF), the tutorials' ``id,date``
variant, unquoted copies re-saved by pandas (often with an index column), LF
endings. Nothing is dropped: every data line ends up either typed and valid or
in the quarantine with the reasons it was rejected.

The stages are pure DataFrame functions:

1. :func:`split_fields` turns raw text lines into one string column per header
   column (a wrong field count is a rejection reason);
2. :func:`validate` casts and checks the fields and writes every failed rule into
   ``reason``;
3. :func:`assign_transaction_ids` gives each valid row a stable id;
4. :func:`split_valid` separates the prepared rows from the quarantine records.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from fraudlab.data import banksim
from fraudlab.config import DEFAULT_START_DATE
from fraudlab.schemas import PREPARED_COLUMNS, QUARANTINE_COLUMNS

#: Columns a header may carry besides BankSim's: the tutorials' id/date, a pandas index.
OPTIONAL_COLUMNS = ("id", "date")
#: Spellings a pandas index column takes in a header.
INDEX_COLUMN_NAMES = frozenset({"", "unnamed: 0", "index"})

#: Bookkeeping columns that travel with each row until it is written.
LINEAGE_COLUMNS = ["source_file", "line_number", "raw_line"]


class HeaderError(ValueError):
    """The input's header is not a BankSim header: nothing can be parsed."""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].strip()
    return value


def parse_header(line: str) -> list[str]:
    """Return the column names of a header line, or raise :class:`HeaderError`.

    Names are matched case-insensitively; a pandas index column comes back as
    ``"_index"`` and is ignored later. The error names fields by position and columns by their
    BankSim names, never the line's own text: a file without a header has data (customer ids,
    amounts) where the header should be, and the message goes to logs.
    """
    names = [_unquote(part) for part in line.rstrip("\r\n").split(",")]
    known = {c.lower(): c for c in (*banksim.BANKSIM_COLUMNS, *OPTIONAL_COLUMNS)}
    columns: list[str] = []
    for position, name in enumerate(names, start=1):
        if name.lower() in known:
            columns.append(known[name.lower()])
        elif name.lower() in INDEX_COLUMN_NAMES and not columns:
            columns.append("_index")
        else:
            raise HeaderError(f"the first line is not a BankSim header: its field {position} of {len(names)} is "
                              f"not a BankSim column (expected {','.join(banksim.BANKSIM_COLUMNS)})")
    missing = [c for c in banksim.BANKSIM_COLUMNS if c not in columns]
    if missing:
        raise HeaderError(
            f"the header lacks the BankSim column(s) {', '.join(missing)}; "
            f"expected {','.join(banksim.BANKSIM_COLUMNS)}"
        )
    if len(set(columns)) != len(columns):
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        raise HeaderError(f"the header repeats the column(s) {', '.join(repeated)}")
    return columns


def _is_header_line(raw: Column) -> Column:
    """True for a line whose first field reads like a header's (e.g. ``step`` or ``id``)."""
    first = F.lower(F.regexp_replace(F.split(raw, ",").getItem(0), r"['\"\s]", ""))
    return first.isin("step", "id", "", "unnamed:0", "index") & F.lower(raw).contains("customer")


def split_fields(lines: DataFrame, columns: list[str]) -> DataFrame:
    """Split raw lines into string columns named by ``columns``.

    ``lines`` has ``source_file``, ``line_number`` and ``raw_line``. Header lines
    (every file of a folder has one) are removed: they are not transactions.
    Adds ``field_error`` when a line has the wrong number of fields.
    """
    raw = F.regexp_replace(F.col("raw_line"), r"\r$", "")
    fields = F.split(raw, ",", -1)
    expected = len(columns)
    cleaned = [
        F.regexp_extract(F.trim(F.get(fields, i)), r"^['\"]?(.*?)['\"]?$", 1).alias(name)
        for i, name in enumerate(columns)
        if name != "_index"
    ]
    field_error = (
        F.when(F.trim(raw) == "", F.lit("empty line"))
        .when(
            F.size(fields) != expected,
            F.format_string(f"expected {expected} fields, found %d", F.size(fields)),
        )
    )
    return (
        lines.where(~_is_header_line(F.col("raw_line")))
        .select(*LINEAGE_COLUMNS, *cleaned, field_error.alias("field_error"))
    )


def _rule(failed: Column, message: str) -> Column:
    return F.when(failed, F.lit(message))


def validate(fields: DataFrame, start_date: str = DEFAULT_START_DATE, keep: Sequence[str] = ()) -> DataFrame:
    """Cast the string fields to their types and record every failed rule in ``reason``.

    ``fields`` has string columns named as BankSim's (plus ``id``/``date`` when
    the input had them) and optionally ``field_error``. The result has the
    prepared columns (``transaction_id`` still empty), the lineage columns and
    ``reason``: null for a valid row, else the failed rules joined by ``"; "``.
    ``event_time`` comes from ``date`` when the input has one, else
    ``start_date`` plus ``step`` days. Columns named in ``keep`` are carried
    through unchanged (the stream keeps each message's Kafka coordinates).
    """
    has_date = "date" in fields.columns
    has_id = "id" in fields.columns
    for name in LINEAGE_COLUMNS:
        if name not in fields.columns:
            fields = fields.withColumn(name, F.lit(None).cast("string" if name != "line_number" else "long"))
    if "field_error" not in fields.columns:
        fields = fields.withColumn("field_error", F.lit(None).cast("string"))

    step = F.col("step").try_cast("int")
    amount = F.col("amount").try_cast("double")
    fraud = F.col("fraud").try_cast("int")
    parsed_date = F.try_to_timestamp(F.col("date")) if has_date else F.lit(None).cast("timestamp")
    derived_time = F.timestamp_add(
        "DAY", step, F.to_timestamp(F.lit(start_date))
    )

    def blank(name: str) -> Column:
        return F.col(name).isNull() | (F.col(name) == "")

    rules = [
        _rule(blank("step"), "step is missing"),
        _rule(~blank("step") & step.isNull(), "step is not an integer"),
        _rule(step < 0, "step is negative"),
        _rule(blank("amount"), "amount is missing"),
        _rule(~blank("amount") & amount.isNull(), "amount is not numeric"),
        _rule(F.isnan(amount) | amount.isin(float("inf"), float("-inf")), "amount is not a finite number"),
        _rule(amount < 0, "amount is negative"),
        _rule(fraud.isNull() | ~fraud.isin(0, 1), "fraud is not 0 or 1"),
        _rule(~F.coalesce(F.col("customer").rlike(banksim.CUSTOMER_PATTERN), F.lit(False)),
              "customer id is not C followed by digits"),
        _rule(~F.coalesce(F.col("merchant").rlike(banksim.MERCHANT_PATTERN), F.lit(False)),
              "merchant id is not M followed by digits"),
        _rule(~F.coalesce(F.col("age").isin(*banksim.AGES), F.lit(False)), "age is not one of 0-6 or U"),
        _rule(~F.coalesce(F.col("gender").isin(*banksim.GENDERS), F.lit(False)), "gender is not one of F, M, E, U"),
        _rule(~F.coalesce(F.col("category").isin(*banksim.CATEGORIES), F.lit(False)), "category is unknown"),
        _rule(~F.coalesce(F.col("zipcodeOri").rlike(r"^[0-9]+$"), F.lit(False)), "zipcodeOri is not digits"),
        _rule(~F.coalesce(F.col("zipMerchant").rlike(r"^[0-9]+$"), F.lit(False)), "zipMerchant is not digits"),
    ]
    if has_id:
        rules.append(_rule(F.col("id").try_cast("long").isNull(), "id is not an integer"))
    if has_date:
        rules.append(_rule(parsed_date.isNull(), "date is not a timestamp"))

    rule_reasons = F.concat_ws("; ", F.array_compact(F.array(*rules)))
    reason = F.coalesce(F.col("field_error"), F.nullif(rule_reasons, F.lit("")))
    event_time = F.coalesce(parsed_date, derived_time)

    return fields.select(
        *LINEAGE_COLUMNS,
        *keep,
        F.lit(None).cast("string").alias("transaction_id"),
        step.alias("step"),
        F.col("customer"),
        F.col("age"),
        F.col("gender"),
        F.col("zipcodeOri").alias("zipcode_ori"),
        F.col("merchant"),
        F.col("zipMerchant").alias("zip_merchant"),
        F.col("category"),
        amount.alias("amount"),
        fraud.alias("fraud"),
        event_time.alias("event_time"),
        F.date_format(event_time, "yyyy-MM").alias("event_month"),
        reason.alias("reason"),
    )


def transaction_key(df: DataFrame) -> Column:
    """The canonical content of a transaction: equal for the same row however it was quoted."""
    return F.concat_ws(
        "|",
        F.col("step").cast("string"),
        F.col("customer"),
        F.col("age"),
        F.col("gender"),
        F.col("zipcode_ori"),
        F.col("merchant"),
        F.col("zip_merchant"),
        F.col("category"),
        F.format_string("%.2f", F.col("amount")),
        F.col("fraud").cast("string"),
    )


def assign_transaction_ids(valid: DataFrame) -> DataFrame:
    """Give each valid row a stable ``transaction_id``.

    The id hashes the row's canonical content and its occurrence number among
    identical rows (in line order), so the same input row gets the same id on
    every run, the quoted and unquoted copies of a file agree, and two identical
    lines are still two transactions with two ids.
    """
    key = transaction_key(valid)
    occurrence = F.row_number().over(
        Window.partitionBy(key).orderBy(F.col("source_file"), F.col("line_number"))
    )
    return valid.withColumn(
        "transaction_id",
        F.substring(F.sha2(F.concat_ws("#", key, occurrence.cast("string")), 256), 1, 32),
    )


def split_valid(validated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Return ``(prepared, quarantine)`` from the output of :func:`validate`."""
    good = assign_transaction_ids(validated.where(F.col("reason").isNull())).select(*PREPARED_COLUMNS)
    bad = validated.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS)
    return good, bad


def parse_lines(lines: DataFrame, columns: list[str], start_date: str = DEFAULT_START_DATE) -> tuple[DataFrame, DataFrame]:
    """All stages at once: raw lines in, ``(prepared, quarantine)`` out."""
    return split_valid(validate(split_fields(lines, columns), start_date))


def quarantine_reasons(quarantine: DataFrame) -> dict[str, int]:
    """``{reason: rows}`` of a quarantine (one small Spark job): the ``quarantine_reasons`` of the apps' metrics."""
    return {row["reason"]: row["count"] for row in quarantine.groupBy("reason").count().collect()}


def header_line_count(lines: DataFrame) -> int:
    """How many of :func:`fraudlab.io.read_lines`' lines are header lines (a Spark job)."""
    return lines.where(_is_header_line(F.col("raw_line"))).count()
