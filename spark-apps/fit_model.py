"""Fit the fraud classifier on prepared BankSim data, gate it on test metrics and register it in MLflow.

Usage:
    spark-submit spark-apps/fit_model.py \
        --input data/prepared/transactions \
        --model-dir data/models/fraud_model \
        [--test-from-step 144] [--search fast|full|smoke] [--parallelism 2] \
        [--gate min_average_precision=0.8 ...] [--gate-file gate.json] \
        [--tracking-uri sqlite:///data/mlflow/mlflow.db] [--experiment fraudlab] \
        [--no-register] [--no-tracking]

Steps before ``--test-from-step`` train, the later ones test (default: the last
20 % of the step range, step 144 for BankSim). The last 20 % of the training
steps are a validation slice: every candidate of the search is fitted on the
earlier training steps and judged there, the best one's decision threshold is
its best F1 there, and the winner is refitted on all training steps. Writes the
``PipelineModel`` to ``--model-dir`` with ``metrics.json`` (test figures, search,
gate) and ``drift_reference.json`` (training deciles for the PSI) beside it, the
folder swapped in whole once complete. A model that fails the gate goes to
``<model-dir>_rejected`` instead: ``--model-dir`` keeps the earlier model.

Exit codes: 0 done; 1 the model failed the validation gate (nothing registered,
``<model-dir>_rejected/metrics.json`` says why), or MLflow cannot be used (checked
before fitting: nothing written); 2 unusable input or flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

from fraudlab import cli, config
from fraudlab.train import search as train_search
from fraudlab.train import split as train_split
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark
from fraudlab.train.gate import gate_thresholds
from fraudlab.train.run import FitOptions, run

APP_NAME = "fit_model"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--input", default=str(config.PREPARED_DIR), help="prepared Parquet data set")
    parser.add_argument("--model-dir", default=str(config.MODEL_DIR), help="where the PipelineModel is (over)written")
    parser.add_argument("--test-from-step", type=cli.int_at_least(1), default=None,
                        help="first test step (default: the last 20%% of the step range)")
    parser.add_argument("--validation-share", type=cli.number_between(0.0, 1.0, low_open=True, high_open=True),
                        default=train_split.DEFAULT_HOLDOUT_SHARE,
                        help="share of the training steps (the latest) used to choose model and threshold")
    parser.add_argument("--search", choices=train_search.SEARCH_MODES, default="fast", help="hyper-parameter grid")
    parser.add_argument("--parallelism", type=cli.int_at_least(1), default=2, help="candidates fitted at once")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gate", action="append", default=[], metavar="RULE=VALUE",
                        help="gate rule, e.g. min_average_precision=0.8 (repeatable; overrides the defaults)")
    parser.add_argument("--gate-file", default=None, help="JSON object of gate rules")
    parser.add_argument("--tracking-uri", default=config.MLFLOW_TRACKING_URI)
    parser.add_argument("--experiment", default="fraudlab")
    parser.add_argument("--model-name", default=config.MODEL_NAME)
    parser.add_argument("--no-register", action="store_true", help="log the run and model, register nothing")
    parser.add_argument("--no-tracking", action="store_true", help="no MLflow at all")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        thresholds = gate_thresholds(args.gate, args.gate_file)
    except (ValueError, OSError) as err:
        log.error("bad gate: %s", err)
        return 2
    options = FitOptions(**{f.name: getattr(args, f.name) for f in fields(FitOptions)})
    spark = build_spark(APP_NAME)
    try:
        return run(spark, options, thresholds)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(cli.run(main, log))
