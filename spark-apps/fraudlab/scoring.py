"""Batch scoring: the model's probability, the rule signals and one combined score.

Pure DataFrame functions, no I/O. :func:`score_claims` runs everything in order
on prepared rows:

1. :func:`fraudlab.features.model_input` adds the customer-history features and
   ``log_amount`` (computed over the rows it is given: a customer's history is
   their earlier steps *in that DataFrame*);
2. :func:`fraudlab.train.pipeline.predict` adds ``amount_zscore`` (from the training
   statistics inside the model) and ``fraud_probability``;
3. :func:`add_rule_signals` adds one named boolean column per rule
   (:data:`RULES`), configured by a :class:`fraudlab.config.DetectionConfig`:

   - ``amount_outlier``: ``amount_zscore > zscore_threshold`` (high amounts only;
     a low amount is not suspicious);
   - ``duplicate_claim``: the same customer, merchant and amount was claimed
     before, at most ``duplicate_window_steps`` steps earlier (same step
     included). Of each run of repeats the first claim is the original and is
     not marked; each later one is, and ``duplicate_of`` names the claim it
     repeats (the latest earlier one);
   - ``customer_amount_spike``: the amount is at least ``spike_ratio`` times the
     customer's earlier mean, and they have at least ``spike_min_history``
     earlier transactions;
4. :func:`add_decision` combines them:

   - ``fraud_score = 1 - (1 - fraud_probability) * prod(1 - w_rule over fired rules)``
     (a noisy-OR with the config's ``rule_weights``), so it lies in [0, 1] and
     equals the model probability when no rule fires;
   - ``risk_tier``: ``'high'`` when ``fraud_score > high_risk_threshold``,
     ``'medium'`` when ``fraud_score >= threshold`` (the model's decision
     threshold, chosen at training), else ``'low'``;
   - ``flagged``: ``fraud_score >= threshold`` or any rule fired;
   - ``reasons``: the signals that fired, in :data:`SIGNALS` order, with
     ``'model_score'`` when ``fraud_probability >= threshold`` on its own. A
     claim is flagged exactly when ``reasons`` is not empty.

Drift (the population-stability index of the model's features) lives in :mod:`fraudlab.drift`.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from fraudlab import features
from fraudlab.train import pipeline as train_pipeline
from fraudlab.data import banksim
from fraudlab.config import DetectionConfig, parse_rule_values
from fraudlab.data.parsing import LINEAGE_COLUMNS
from fraudlab.schemas import SCORED_SCHEMA

#: The rule signals, in the order their names appear in ``reasons``.
RULES: tuple[str, ...] = ("amount_outlier", "duplicate_claim", "customer_amount_spike")
#: The reason given when the model's probability alone reaches the threshold.
MODEL_SIGNAL = "model_score"
#: Every reason a claim can carry, in ``reasons`` order.
SIGNALS: tuple[str, ...] = (MODEL_SIGNAL, *RULES)
RISK_TIERS: tuple[str, ...] = ("high", "medium", "low")

REASON_SEPARATOR = "|"

# --------------------------------------------------------------------------- rule signals


def rule_weights(config: DetectionConfig) -> dict[str, float]:
    """The weight of each rule in :data:`RULES` (0.0 when the config has none); each must lie in [0, 1]."""
    unknown = sorted(set(config.rule_weights) - set(RULES))
    if unknown:
        raise ValueError(f"rule weights for unknown rule(s) {', '.join(unknown)}; rules are {', '.join(RULES)}")
    weights = {rule: float(config.rule_weights.get(rule, 0.0)) for rule in RULES}
    bad = {rule: w for rule, w in weights.items() if not 0.0 <= w <= 1.0}
    if bad:
        raise ValueError(f"rule weights must lie in [0, 1]: {bad}")
    return weights


def is_amount_outlier(config: DetectionConfig) -> Column:
    """The amount's z-score within its category is above ``zscore_threshold``."""
    return F.coalesce(F.col("amount_zscore") > F.lit(float(config.zscore_threshold)), F.lit(False))


def is_customer_amount_spike(config: DetectionConfig) -> Column:
    """The amount is ``spike_ratio`` times the customer's earlier mean, with enough earlier transactions."""
    has_history = F.col("customer_prior_count") >= F.lit(int(config.spike_min_history))
    far_above_own_mean = F.col("amount_over_customer_mean") >= F.lit(float(config.spike_ratio))
    return F.coalesce(has_history & far_above_own_mean, F.lit(False))


def duplicate_claim_window() -> Window:
    """Claims of one customer at one merchant for one amount (to the cent), oldest first.

    Ties on the same step are broken by ``transaction_id`` so the original is
    the same on every run.
    """
    return Window.partitionBy("customer", "merchant", F.round(F.col("amount"), 2)).orderBy(
        F.col("step"), F.col("transaction_id")
    )


def add_duplicate_claims(df: DataFrame, window_steps: int) -> DataFrame:
    """Add ``duplicate_claim`` and ``duplicate_of`` (the id of the claim it repeats, else null).

    A claim is a duplicate when the same customer, merchant and amount was
    claimed at most ``window_steps`` steps earlier; the first claim of a run is
    the original.
    """
    if window_steps < 0:
        raise ValueError("duplicate_window_steps must be >= 0")
    window = duplicate_claim_window()
    previous_step = F.lag("step").over(window)
    previous_id = F.lag("transaction_id").over(window)
    is_duplicate_claim = F.coalesce(
        (F.col("step") - F.col("_previous_step")) <= F.lit(int(window_steps)), F.lit(False)
    )
    return (
        df.withColumn("_previous_step", previous_step)
        .withColumn("_previous_id", previous_id)
        .withColumn("duplicate_claim", is_duplicate_claim)
        .withColumn("duplicate_of", F.when(F.col("duplicate_claim"), F.col("_previous_id")))
        .drop("_previous_step", "_previous_id")
    )


def add_rule_signals(df: DataFrame, config: DetectionConfig) -> DataFrame:
    """Add one boolean column per rule in :data:`RULES`, plus ``duplicate_of``.

    Needs ``transaction_id``, ``step``, ``customer``, ``merchant``, ``amount``,
    ``amount_zscore``, ``customer_prior_count`` and ``amount_over_customer_mean``.
    """
    return (
        add_duplicate_claims(df, config.duplicate_window_steps)
        .withColumn("amount_outlier", is_amount_outlier(config))
        .withColumn("customer_amount_spike", is_customer_amount_spike(config))
    )


# --------------------------------------------------------------------------- combined score


def fraud_score(config: DetectionConfig) -> Column:
    """Noisy-OR of the model probability and the fired rules: ``1 - (1 - p) * prod(1 - w_rule)``."""
    weights = rule_weights(config)
    kept = F.lit(1.0) - F.col(train_pipeline.PROBABILITY_COL)
    for rule in RULES:
        kept = kept * F.when(F.col(rule), F.lit(1.0 - weights[rule])).otherwise(F.lit(1.0))
    return F.lit(1.0) - kept


def risk_tier(score: Column, threshold: float, high_risk_threshold: float) -> Column:
    """``'high'`` above ``high_risk_threshold``, ``'medium'`` from ``threshold``, else ``'low'``."""
    return (
        F.when(score > F.lit(float(high_risk_threshold)), F.lit("high"))
        .when(score >= F.lit(float(threshold)), F.lit("medium"))
        .otherwise(F.lit("low"))
    )


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0 or math.isnan(threshold):
        raise ValueError(f"the decision threshold must lie in (0, 1], got {threshold}")
    return threshold


def add_decision(df: DataFrame, config: DetectionConfig, threshold: float) -> DataFrame:
    """Add ``fraud_score``, ``risk_tier``, ``flagged`` and ``reasons`` (see the module docstring).

    Needs ``fraud_probability`` and the rule columns of :func:`add_rule_signals`.
    """
    threshold = _check_threshold(threshold)
    model_alone_passes = F.col(train_pipeline.PROBABILITY_COL) >= F.lit(threshold)
    any_rule_fired = F.lit(False)
    for rule in RULES:
        any_rule_fired = any_rule_fired | F.col(rule)
    reasons = F.array_compact(
        F.array(
            F.when(model_alone_passes, F.lit(MODEL_SIGNAL)),
            *[F.when(F.col(rule), F.lit(rule)) for rule in RULES],
        )
    )
    return (
        df.withColumn("fraud_score", fraud_score(config))
        .withColumn("risk_tier", risk_tier(F.col("fraud_score"), threshold, config.high_risk_threshold))
        .withColumn("flagged", (F.col("fraud_score") >= F.lit(threshold)) | any_rule_fired)
        .withColumn("reasons", reasons)
    )


def score_with_features(
    pipeline_model: PipelineModel,
    df: DataFrame,
    config: DetectionConfig,
    threshold: float,
    model_version: str | None = None,
) -> DataFrame:
    """Prepared rows -> model features, probability, rules and decision, every column kept.

    The drift figures need the model features that :func:`score_claims` leaves
    out; both come from this one frame.
    """
    predicted = train_pipeline.predict(pipeline_model, features.model_input(df))
    return add_decision(add_rule_signals(predicted, config), config, threshold).withColumn(
        "model_version", F.lit(model_version).cast("string")
    )


def score_claims(
    pipeline_model: PipelineModel,
    df: DataFrame,
    config: DetectionConfig,
    threshold: float,
    model_version: str | None = None,
) -> DataFrame:
    """Score prepared rows: :data:`SCORED_COLUMNS` (probability, rules, combined score, reasons).

    Customer-history features are computed over ``df`` itself (earlier steps
    only); duplicates are looked for within ``df``.
    """
    return select_scored(score_with_features(pipeline_model, df, config, threshold, model_version))


def select_scored(df: DataFrame) -> DataFrame:
    """The scored-claims contract: :data:`SCORED_COLUMNS` with their types, in order."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in SCORED_SCHEMA.fields])


def flatten_scored(scored: DataFrame) -> DataFrame:
    """Scored claims as CSV can hold them: ``reasons`` joined by ``'|'`` (empty when none)."""
    return scored.withColumn("reasons", F.concat_ws(REASON_SEPARATOR, F.col("reasons")))


def unflatten_scored(flat: DataFrame) -> DataFrame:
    """The inverse of :func:`flatten_scored`, back to :data:`SCORED_SCHEMA`."""
    reasons = F.when(F.coalesce(F.col("reasons"), F.lit("")) == "", F.array().cast("array<string>")).otherwise(
        F.split(F.col("reasons"), "\\" + REASON_SEPARATOR)
    )
    return select_scored(flat.withColumn("reasons", reasons))


# --------------------------------------------------------------------------- JSON claims


def split_json_fields(lines: DataFrame) -> DataFrame:
    """JSON lines (one claim per line, BankSim's field names) -> the string fields that ``validate`` takes.

    The result feeds :func:`fraudlab.data.parsing.validate` like the output of
    :func:`fraudlab.data.parsing.split_fields` does.

    ``lines`` is what :func:`fraudlab.io.read_lines` returns. Every field is
    read as text (a JSON number ``4.55`` becomes ``"4.55"``), so the one set of
    validation rules judges it; a line that is not a JSON object gets a
    ``field_error`` and goes to the quarantine like a CSV line with the wrong
    number of fields. Unknown keys are ignored.
    """
    schema = T.StructType([T.StructField(name, T.StringType()) for name in banksim.BANKSIM_COLUMNS])
    raw = F.col("raw_line")
    is_blank = F.trim(F.coalesce(raw, F.lit(""))) == ""
    is_json_object = F.json_object_keys(raw).isNotNull()
    field_error = F.when(is_blank, F.lit("empty line")).when(~is_json_object, F.lit("not a JSON object"))
    parsed = F.from_json(raw, schema)
    return lines.select(
        *LINEAGE_COLUMNS,
        *[parsed.getField(name).alias(name) for name in banksim.BANKSIM_COLUMNS],
        field_error.alias("field_error"),
    )


def detection_config(rule_weight_items: list[str] = (), **thresholds: float) -> DetectionConfig:
    """The defaults with ``thresholds`` (DetectionConfig's field names) and ``RULE=WEIGHT`` items applied.

    What ``--zscore-threshold ... --rule-weight amount_outlier=0.2`` of ``score_claims.py`` mean;
    raises ValueError on a bad item, an unknown rule or a weight outside [0, 1].
    """
    base = DetectionConfig()
    weights = {**base.rule_weights,
               **parse_rule_values(list(rule_weight_items), "rule weight", "RULE=WEIGHT")}
    detection = replace(base, **thresholds, rule_weights=weights)
    rule_weights(detection)
    return detection
