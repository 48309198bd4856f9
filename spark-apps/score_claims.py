"""Score a batch of claims: model probability, rule signals, combined score, risk tier, reasons, drift.

Usage:
    spark-submit spark-apps/score_claims.py \
        --input data/prepared/transactions [--format parquet|csv|json] \
        --output data/scored/claims [--output-format parquet|csv|json] \
        [--model models:/fraudlab_fraud_classifier@champion | data/models/fraud_model] \
        [--tracking-uri sqlite:///data/mlflow/mlflow.db] \
        [--quarantine data/scored/claims_quarantine] [--start-date 2024-01-01] \
        [--threshold 0.5] [--zscore-threshold 3.0] [--duplicate-window-steps 7] \
        [--spike-ratio 5.0] [--spike-min-history 5] [--high-risk-threshold 0.7] \
        [--rule-weight amount_outlier=0.15 ...]

Input formats: ``parquet`` is prepared data (``prepare_data.py`` output);
``csv`` is a BankSim file, parsed and validated exactly as preparation does,
with rejected rows written whole to ``--quarantine`` (default
``<output>_quarantine``); ``json`` is one claim per line with BankSim's field
names, judged by the same validation rules and quarantined the same way.

The customer-history features (earlier transaction count and mean amount) and
the duplicate-claim rule are computed over the scored batch itself: a claim's
history is the same customer's claims on earlier steps *of this input*. Score
a whole period at once for full histories.

Output is overwritten: Parquet partitioned by ``event_month``, or CSV (with a
header, ``reasons`` joined by ``|``) or JSON lines. ``<output>/_metrics.json``
holds the summary: ``claims_processed``, ``flagged``, ``high_risk``,
``duplicates``, per-signal counts, alert precision where labels exist, the
population-stability index per model feature (``drift``), and ``rows_in`` /
``rows_quarantined`` for CSV and JSON input (rows in = processed + quarantined).

Exit codes: 0 done; 2 unusable input, model or flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

from fraudlab import cli, config, registry, scoring
from fraudlab.batch_scoring import ScoreOptions, run
from fraudlab.io import claims
from fraudlab.logs import configure_logging
from fraudlab.session import build_spark

APP_NAME = "score_claims"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = config.DetectionConfig()
    parser = cli.parser(__doc__, APP_NAME)
    parser.add_argument("--input", default=str(config.PREPARED_DIR), help="claims to score (file or folder)")
    parser.add_argument("--format", choices=claims.FORMATS, default="parquet", help="input format")
    parser.add_argument("--output", default=str(config.SCORED_DIR), help="scored claims to (over)write")
    parser.add_argument("--output-format", choices=claims.FORMATS, default="parquet")
    parser.add_argument("--quarantine", default=None, help="rejected CSV/JSON rows (default <output>_quarantine)")
    parser.add_argument("--start-date", type=cli.iso_date, default=config.DEFAULT_START_DATE,
                        help="date of step 0 (CSV/JSON input)")
    parser.add_argument("--model", default=registry.champion_uri(), help="model folder or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", default=config.MLFLOW_TRACKING_URI)
    parser.add_argument("--threshold", type=cli.probability, default=None,
                        help="decision threshold (default: the one chosen at training)")
    parser.add_argument("--zscore-threshold", type=cli.number_at_least(0.0, open_=True),
                        default=defaults.zscore_threshold)
    parser.add_argument("--duplicate-window-steps", type=cli.int_at_least(0), default=defaults.duplicate_window_steps)
    parser.add_argument("--spike-ratio", type=cli.number_at_least(1.0), default=defaults.spike_ratio)
    parser.add_argument("--spike-min-history", type=cli.int_at_least(0), default=defaults.spike_min_history)
    parser.add_argument("--high-risk-threshold", type=cli.probability, default=defaults.high_risk_threshold)
    parser.add_argument("--rule-weight", action="append", default=[], metavar="RULE=WEIGHT",
                        help=f"weight of a rule in the combined score (rules: {', '.join(scoring.RULES)})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        detection = scoring.detection_config(
            args.rule_weight, zscore_threshold=args.zscore_threshold,
            duplicate_window_steps=args.duplicate_window_steps, spike_ratio=args.spike_ratio,
            spike_min_history=args.spike_min_history, high_risk_threshold=args.high_risk_threshold)
    except ValueError as err:
        log.error("bad detection flags: %s", err)
        return 2
    options = ScoreOptions(**{f.name: getattr(args, f.name) for f in fields(ScoreOptions)})
    spark = build_spark(APP_NAME)
    try:
        return run(spark, options, detection)
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(cli.run(main, log))
