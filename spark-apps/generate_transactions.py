"""Write synthetic BankSim transactions (the public file's format and statistics) to a CSV file.

Usage:
    spark-submit spark-apps/generate_transactions.py \
        --rows 594643 --output data/raw/transactions.csv [--seed 140513] [--variant banksim|with-id]

It needs no Spark and also runs with plain ``python``. The same ``--rows`` and
``--seed`` always give a byte-identical file. ``--rows`` scales everything in
proportion to the public file (customers, frauds per step, ...): 180 steps
whenever there are at least 180 rows (see ``fraudlab.data.generator.plan``).
``--variant with-id`` adds the tutorials' ``id,date`` columns in front.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from fraudlab.logs import configure_logging
from fraudlab import cli, config
from fraudlab.data import banksim, generator

APP_NAME = "generate_transactions"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--rows", type=cli.int_at_least(1), default=banksim.FULL_ROWS, help="number of transactions")
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED, help="random seed")
    parser.add_argument("--output", default=str(config.RAW_CSV), help="CSV file to (over)write")
    parser.add_argument("--variant", choices=generator.VARIANTS, default="banksim", help="column layout")
    parser.add_argument("--start-date", type=cli.iso_date, default=config.DEFAULT_START_DATE,
                        help="date of step 0 (with-id only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    started = time.perf_counter()
    data = generator.generate(args.rows, args.seed)
    path = generator.write_csv(data, args.output, args.variant, args.start_date)
    log.info(
        "wrote %s: %d rows, %d frauds, variant %s, seed %d in %.1f s",
        path,
        len(data),
        int(data["fraud"].sum()),
        args.variant,
        args.seed,
        time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
