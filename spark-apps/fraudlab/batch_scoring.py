"""One batch-scoring run, end to end: read the claims, score, write them, measure, write ``_metrics.json``.

``score_claims.py`` parses its flags and calls :func:`run`; this module holds what the run does:
the format dispatch of :mod:`fraudlab.io.claims`, the model score and rule signals of
:mod:`fraudlab.scoring`, the quarantine of CSV and JSON input, the drift figures of
:mod:`fraudlab.drift` and the layout of ``_metrics.json`` (:func:`fraudlab.reports.scoring_metrics`).

The scored claims (with their ``_metrics.json``) and the quarantine are written beside their places and
swapped in whole at the end (:func:`fraudlab.io.publishing`): a failed or killed run leaves the earlier
ones readable.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

from pyspark.sql import SparkSession

from fraudlab import drift, io, registry, reports, scoring
from fraudlab.config import DetectionConfig
from fraudlab.data.parsing import HeaderError, quarantine_reasons
from fraudlab.io import claims

#: The app's logger: the run's lines read "score_claims: ..." as the app's own.
log = logging.getLogger("score_claims")


@dataclass(frozen=True)
class ScoreOptions:
    """The per-run values of a scoring run: the flags of ``score_claims.py`` but the detection ones."""

    input: str
    format: str
    output: str
    output_format: str
    quarantine: str | None
    start_date: str
    model: str
    tracking_uri: str
    threshold: float | None


def run(spark: SparkSession, options: ScoreOptions, detection: DetectionConfig) -> int:
    """Score ``options.input`` into ``options.output``; the app's exit code (2: unusable input or model)."""
    quarantine_path = options.quarantine or f"{options.output.rstrip('/')}_quarantine"
    problem = io.overlap(spark, {"--input": options.input},
                         {"--output": options.output, "--quarantine": quarantine_path})
    if problem:
        log.error("%s", problem)
        return 2
    try:
        pipeline_model, info, threshold = registry.load_scoring_model(options.model, options.tracking_uri,
                                                                      options.threshold)
        if not io.exists(spark, options.input):
            log.error("no claims at %s", options.input)
            return 2
        prepared, quarantine = claims.read_claims(spark, options.input, options.format, options.start_date)
    except registry.ModelLoadError as err:  # a ValueError too: caught first
        log.error("%s", err)
        return 2
    except (HeaderError, ValueError) as err:
        log.error("cannot read %s: %s", options.input, err)
        return 2
    if prepared.isEmpty():
        rejected = quarantine_reasons(quarantine) if quarantine is not None else {}
        log.error("--input %s holds no claims to score%s: nothing written", options.input,
                  f" ({sum(rejected.values())} rows rejected: {rejected})" if rejected else "")
        return 2
    version = registry.model_version(info)
    detail = scoring.score_with_features(pipeline_model, prepared, detection, threshold, version).persist()
    scored = scoring.select_scored(detail)

    with ExitStack() as outputs:  # each output swapped in whole once everything is written
        output = outputs.enter_context(io.publishing(spark, options.output))
        claims.write_scored(scored, output, options.output_format)
        summary = reports.summary(scored).first().asDict()
        if not info.get("drift_reference"):
            log.warning("model %s has no drift reference: no PSI figures", options.model)
        figures = drift.drift_figures(detail, info.get("drift_reference"))
        metrics = reports.scoring_metrics(
            {"input": options.input, "format": options.format, "output": options.output,
             "output_format": options.output_format, "model": options.model, "model_version": version,
             "threshold": float(threshold), "detection": detection.as_dict()}, summary, figures)
        if quarantine is not None:
            quarantine = quarantine.cache()
            quarantine.write.json(outputs.enter_context(io.publishing(spark, quarantine_path)), mode="overwrite")
            reasons = quarantine_reasons(quarantine)
            metrics.update({"quarantine": quarantine_path, "rows_in": summary["claims"] + sum(reasons.values()),
                            "rows_quarantined": sum(reasons.values()), "quarantine_reasons": reasons})
        io.write_json(spark, f"{output}/_metrics.json", metrics)

    log.info("claims_processed=%d flagged=%d high_risk=%d duplicates=%d (threshold %.4f, model %s)",
             metrics["claims_processed"], metrics["flagged"], metrics["high_risk"], metrics["duplicates"],
             threshold, version)
    if quarantine is not None:
        log.info("rows_in=%d rows_quarantined=%d", metrics["rows_in"], metrics["rows_quarantined"])
    for name, figure in figures.items():
        log.info("drift %s: PSI %.4f (%s)", name, figure["psi"], figure["status"])
    return 0
