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

The month's folder is written beside its place and swapped in whole when complete
(a run killed part-way leaves the earlier report as it was), nothing else is
touched, so a re-run gives the same files and a backfill is one run per month. A month
without scored claims gets the same files, with ``"has_data": false`` and a
message in ``report.json``. Nothing depends on the clock.

Exit codes: 0 done; 2 bad flags, no scored data at ``--input`` or data that does
not read as ``--format`` (the earlier report is kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from fraudlab import cli, config, io, reports
from fraudlab.io import claims
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark

APP_NAME = "monthly_report"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--input", default=str(config.SCORED_DIR), help="scored claims (score_claims.py output)")
    parser.add_argument("--format", choices=claims.FORMATS, default="parquet", help="format of --input")
    parser.add_argument("--month", type=cli.month, required=True, help="the month to report, YYYY-MM")
    parser.add_argument("--output", default=str(config.REPORTS_DIR),
                        help="reports root; the app writes <output>/month=YYYY-MM/")
    parser.add_argument("--top-merchants", type=cli.int_at_least(1), default=reports.DEFAULT_TOP_MERCHANTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    month_dir = f"{args.output.rstrip('/')}/month={args.month}"
    spark = build_spark(APP_NAME)
    try:
        problem = io.overlap(spark, {"--input": args.input}, {"--output": month_dir})
        if problem:
            log.error("%s", problem)
            return 2
        if not io.exists(spark, args.input):
            log.error("no scored claims at %s", args.input)
            return 2
        try:
            scored = claims.read_scored(spark, args.input, args.format)
        except ValueError as err:
            log.error("--input %s", err)
            return 2
        io.skip_checksums(spark, month_dir)
        with io.publishing(spark, month_dir) as staging:
            month = reports.month_report(reports.month_claims(scored, args.month).cache(), args.month,
                                         args.input, args.top_merchants)
            for name, text in month.tables.items():
                io.write_text(spark, f"{staging}/{name}", text)
            io.write_bytes(spark, f"{staging}/{reports.CHART_FILE}", month.chart)
            io.write_text(spark, f"{staging}/{reports.REPORT_FILE}",
                          json.dumps(month.report, indent=2, sort_keys=True) + "\n")

        summary = month.summary
        if month.report["has_data"]:
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
    sys.exit(cli.run(main, log))
