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

from fraudlab import config, drift, io, registry, reports, scoring
from fraudlab.io import claims
from fraudlab.logs import configure_logging
from fraudlab.data.parsing import HeaderError, quarantine_reasons
from fraudlab.session import build_spark

APP_NAME = "score_claims"
log = logging.getLogger(APP_NAME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = config.DetectionConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(config.PREPARED_DIR), help="claims to score (file or folder)")
    parser.add_argument("--format", choices=claims.FORMATS, default="parquet", help="input format")
    parser.add_argument("--output", default=str(config.SCORED_DIR), help="scored claims to (over)write")
    parser.add_argument("--output-format", choices=claims.FORMATS, default="parquet")
    parser.add_argument("--quarantine", default=None, help="rejected CSV/JSON rows (default <output>_quarantine)")
    parser.add_argument("--start-date", default=config.DEFAULT_START_DATE, help="date of step 0 (CSV/JSON input)")
    parser.add_argument("--model", default=registry.champion_uri(), help="model folder or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", default=config.MLFLOW_TRACKING_URI)
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold (default: the one chosen at training)")
    parser.add_argument("--zscore-threshold", type=float, default=defaults.zscore_threshold)
    parser.add_argument("--duplicate-window-steps", type=int, default=defaults.duplicate_window_steps)
    parser.add_argument("--spike-ratio", type=float, default=defaults.spike_ratio)
    parser.add_argument("--spike-min-history", type=int, default=defaults.spike_min_history)
    parser.add_argument("--high-risk-threshold", type=float, default=defaults.high_risk_threshold)
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
    quarantine_path = args.quarantine or f"{args.output.rstrip('/')}_quarantine"
    spark = build_spark(APP_NAME)
    try:
        try:
            pipeline_model, info, threshold = registry.load_scoring_model(args.model, args.tracking_uri,
                                                                          args.threshold)
            if not io.exists(spark, args.input):
                log.error("no claims at %s", args.input)
                return 2
            prepared, quarantine = claims.read_claims(spark, args.input, args.format, args.start_date)
        except registry.ModelLoadError as err:  # a ValueError too: caught first
            log.error("%s", err)
            return 2
        except (HeaderError, ValueError) as err:
            log.error("cannot read %s: %s", args.input, err)
            return 2
        version = registry.model_version(info)
        detail = scoring.score_with_features(pipeline_model, prepared, detection, threshold, version).persist()
        scored = scoring.select_scored(detail)

        claims.write_scored(scored, args.output, args.output_format)
        summary = reports.summary(scored).first().asDict()
        if not info.get("drift_reference"):
            log.warning("model %s has no drift reference: no PSI figures", args.model)
        figures = drift.drift_figures(detail, info.get("drift_reference"))
        metrics = reports.scoring_metrics(
            {"input": args.input, "format": args.format, "output": args.output,
             "output_format": args.output_format, "model": args.model, "model_version": version,
             "threshold": float(threshold), "detection": detection.as_dict()}, summary, figures)
        if quarantine is not None:
            quarantine = quarantine.cache()
            quarantine.write.mode("overwrite").json(quarantine_path)
            reasons = quarantine_reasons(quarantine)
            metrics.update({"quarantine": quarantine_path, "rows_in": summary["claims"] + sum(reasons.values()),
                            "rows_quarantined": sum(reasons.values()), "quarantine_reasons": reasons})
        io.write_json(spark, f"{args.output.rstrip('/')}/_metrics.json", metrics)

        log.info("claims_processed=%d flagged=%d high_risk=%d duplicates=%d (threshold %.4f, model %s)",
                 metrics["claims_processed"], metrics["flagged"], metrics["high_risk"], metrics["duplicates"],
                 threshold, version)
        if quarantine is not None:
            log.info("rows_in=%d rows_quarantined=%d", metrics["rows_in"], metrics["rows_quarantined"])
        for name, figure in figures.items():
            log.info("drift %s: PSI %.4f (%s)", name, figure["psi"], figure["status"])
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
