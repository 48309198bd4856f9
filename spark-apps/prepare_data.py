"""Validate BankSim transactions and write them as a typed, month-partitioned Parquet data set.

Usage:
    spark-submit spark-apps/prepare_data.py \
        --input data/raw/transactions.csv \
        --output data/prepared/transactions \
        --quarantine data/prepared/quarantine [--start-date 2024-01-01]

Every data line ends up in ``--output`` or in ``--quarantine`` (JSON lines with
the raw line and the reasons); the three counts go to the log and to
``<output>/_metrics.json``. Both outputs are written beside their places and swapped in
when complete, so a re-run replaces them whole and a failed or killed run leaves the
earlier ones as they were.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fraudlab import cli, config, io
from fraudlab.io import claims
from fraudlab.logs import configure_logging
from fraudlab.data.parsing import header_line_count, parse_lines, quarantine_reasons
from fraudlab.schemas import PARTITION_COLUMN
from fraudlab.session import build_spark

APP_NAME = "prepare_data"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--input", default=str(config.RAW_CSV), help="CSV file or folder of CSV files")
    parser.add_argument("--output", default=str(config.PREPARED_DIR), help="Parquet data set to (over)write")
    parser.add_argument("--quarantine", default=str(config.QUARANTINE_DIR), help="where rejected rows go")
    parser.add_argument("--start-date", type=cli.iso_date, default=config.DEFAULT_START_DATE,
                        help="date of step 0 (one step per day)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    spark = build_spark(APP_NAME)
    try:
        problem = io.overlap(spark, {"--input": args.input}, {"--output": args.output, "--quarantine": args.quarantine})
        if problem:
            log.error("%s", problem)
            return 2
        columns = claims.csv_columns(spark, args.input, log)
        if columns is None:
            return 2
        lines = io.read_lines(spark, args.input).cache()
        prepared, quarantine = parse_lines(lines, columns, args.start_date)
        prepared = prepared.cache()
        quarantine = quarantine.cache()

        rows_out = prepared.count()
        rows_quarantined = quarantine.count()
        rows_in = rows_out + rows_quarantined
        data_lines = lines.count() - header_line_count(lines)
        if data_lines != rows_in:
            log.error("row accounting broken: %d data lines but %d out + %d quarantined: nothing written",
                      data_lines, rows_out, rows_quarantined)
            return 1
        metrics = {
            "input": args.input,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "rows_quarantined": rows_quarantined,
            "quarantine_reasons": quarantine_reasons(quarantine),
        }
        with io.publishing(spark, args.output) as output, io.publishing(spark, args.quarantine) as rejected:
            prepared.write.partitionBy(PARTITION_COLUMN).parquet(output, mode="overwrite")
            quarantine.write.json(rejected, mode="overwrite")
            io.write_json(spark, f"{output}/_metrics.json", metrics)
        log.info("rows_in=%d rows_out=%d rows_quarantined=%d", rows_in, rows_out, rows_quarantined)
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(cli.run(main, log))
