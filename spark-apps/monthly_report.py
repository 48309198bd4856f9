"""Write the monthly fraud report of scored claims: summary, tables and a chart for one month.

Usage:
    spark-submit spark-apps/monthly_report.py \
        --input data/scored/claims --month 2024-03 \
        --output data/reports [--format parquet|csv|json] [--top-merchants 20]

Reads the output of ``score_claims.py`` (``--format`` as it was written) and
writes ``<output>/month=YYYY-MM/``:

- ``report.json``: the month's summary (volumes, amounts, risk tiers, signal
  counts, alert precision), flagged claims by signal, the high-risk merchants
  and the duplicate-claim count;
- ``flagged_by_signal.csv``, ``high_risk_merchants.csv``,
  ``duplicate_claims.csv``, ``daily_volumes.csv``: the tables;
- ``chart.png``: claims and flagged claims per day, and flagged claims per signal.

The month's folder is replaced as a whole and nothing else is touched, so a
re-run gives the same files and a backfill is one run per month. A month
without scored claims gets the same files, with ``"has_data": false`` and a
message in ``report.json``. Nothing depends on the clock.

Exit codes: 0 done; 2 bad flags or no scored data at ``--input``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

from fraudlab import config, io, reports, scoring
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark

APP_NAME = "monthly_report"
log = logging.getLogger(APP_NAME)

MONTH_PATTERN = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
INPUT_FORMATS = ("parquet", "csv", "json")
REPORT_FILE = "report.json"
CHART_FILE = "chart.png"
TABLE_FILES = {
    "flagged_by_signal": "flagged_by_signal.csv",
    "high_risk_merchants": "high_risk_merchants.csv",
    "duplicate_claims": "duplicate_claims.csv",
    "daily_volumes": "daily_volumes.csv",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(config.SCORED_DIR), help="scored claims (score_claims.py output)")
    parser.add_argument("--format", choices=INPUT_FORMATS, default="parquet", help="format of --input")
    parser.add_argument("--month", required=True, help="the month to report, YYYY-MM")
    parser.add_argument("--output", default=str(config.REPORTS_DIR),
                        help="reports root; the app writes <output>/month=YYYY-MM/")
    parser.add_argument("--top-merchants", type=int, default=reports.DEFAULT_TOP_MERCHANTS)
    return parser.parse_args(argv)


def read_scored(spark, path: str, fmt: str):
    """Scored claims in :data:`fraudlab.scoring.SCORED_SCHEMA`, whatever format they were written in."""
    if fmt == "parquet":
        return scoring.select_scored(spark.read.schema(scoring.SCORED_SCHEMA).parquet(path))
    if fmt == "json":
        return scoring.select_scored(spark.read.schema(scoring.SCORED_SCHEMA).json(path))
    flat = spark.read.schema(scoring.FLAT_SCORED_SCHEMA).option("header", True).csv(path)
    return scoring.unflatten_scored(flat)


def _plain(row) -> dict:
    """A collected Row as JSON-ready values (dates as ISO strings)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.asDict().items()}


def _fs(spark, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _replace_folder(spark, path: str) -> None:
    """Delete ``path`` (recursively) if it exists: the month is rewritten as a whole.

    Also stops the local file system's ``.crc`` side files: the report folder is
    read by people, and no Spark job reads it back.
    """
    fs, hpath = _fs(spark, path)
    fs.setWriteChecksum(False)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def _write_bytes(spark, path: str, payload: bytes) -> None:
    fs, hpath = _fs(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(payload))
    finally:
        out.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    if not MONTH_PATTERN.match(args.month):
        log.error("--month %r is not YYYY-MM", args.month)
        return 2
    month_dir = f"{args.output.rstrip('/')}/month={args.month}"
    spark = build_spark(APP_NAME)
    try:
        if not io.exists(spark, args.input):
            log.error("no scored claims at %s", args.input)
            return 2
        claims = reports.month_claims(read_scored(spark, args.input, args.format), args.month).cache()

        summary = _plain(reports.summary(claims).first())
        tables = {
            "flagged_by_signal": reports.flagged_by_signal(claims),
            "high_risk_merchants": reports.high_risk_merchants(claims, args.top_merchants),
            "duplicate_claims": reports.duplicate_claims(claims),
            "daily_volumes": reports.daily_volumes(claims),
        }
        collected = {name: (df.columns, df.collect()) for name, df in tables.items()}
        versions = sorted(r["model_version"] for r in claims.select("model_version").distinct().collect()
                          if r["model_version"] is not None)
        has_data = summary["claims"] > 0

        report = {
            "month": args.month,
            "input": args.input,
            "has_data": has_data,
            "model_versions": versions,
            "summary": summary,
            "flagged_by_signal": [_plain(r) for r in collected["flagged_by_signal"][1]],
            "high_risk_merchants": [_plain(r) for r in collected["high_risk_merchants"][1]],
            "duplicate_claims": {
                "count": len(collected["duplicate_claims"][1]),
                "amount": round(sum(r["amount"] for r in collected["duplicate_claims"][1]), 2),
            },
            "files": {"chart": CHART_FILE, "tables": TABLE_FILES},
        }
        if not has_data:
            report["message"] = f"no scored claims for {args.month} in {args.input}"
        chart = reports.chart_png(args.month, [_plain(r) for r in collected["daily_volumes"][1]],
                                  [_plain(r) for r in collected["flagged_by_signal"][1]])

        _replace_folder(spark, month_dir)
        for name, (columns, rows) in collected.items():
            io.write_text(spark, f"{month_dir}/{TABLE_FILES[name]}", reports.to_csv_text(columns, rows))
        _write_bytes(spark, f"{month_dir}/{CHART_FILE}", chart)
        io.write_text(spark, f"{month_dir}/{REPORT_FILE}", json.dumps(report, indent=2, sort_keys=True) + "\n")

        if has_data:
            precision = summary["alert_precision"]
            log.info("%s: claims=%d flagged=%d high_risk=%d duplicates=%d alert_precision=%s -> %s",
                     args.month, summary["claims"], summary["flagged"], summary["high_risk"],
                     summary["duplicates"], "n/a" if precision is None else f"{precision:.3f}", month_dir)
        else:
            log.warning("%s: no scored claims; wrote an empty report to %s", args.month, month_dir)
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
