"""The Spark tables the notebooks show: lazy, pure ``DataFrame -> DataFrame`` transforms, and the bins they cut.

:func:`sample_customers`, :func:`overview`, :func:`fraud_rate_by`,
:func:`volume_by_step`, :func:`binned_by_label` (with the edges of
:func:`log_edges`, :func:`probability_edges` and the names of
:func:`bin_labels`), :func:`quantiles_by_label` and :func:`worst_errors`.
Their results are small; the notebook collects them with ``toPandas()``.

May touch: Spark DataFrames (no reads, writes, actions or session), the
column names of :mod:`fraudlab.train.pipeline` and the bins of
:mod:`fraudlab.drift`. No pandas, no figures, no services.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab import drift as fdrift
from fraudlab.train import pipeline as train_pipeline

LABEL_COL = train_pipeline.LABEL_COL
PROBABILITY_COL = train_pipeline.PROBABILITY_COL

#: Bins of the customer-history features (:data:`fraudlab.features.HISTORY_COLUMNS`) shown against the label.
HISTORY_EDGES: dict[str, list[float]] = {
    # a customer's first steps have no history (count 0, ratio exactly 1.0)
    "customer_prior_count": [1, 5, 10, 25, 50, 100, 150],
    "amount_over_customer_mean": [0.5, 0.9, 1.1, 2, 3, 5, 10],
}

#: Columns listed for each false positive and false negative, when the scored rows have them.
ERROR_COLUMNS: list[str] = [
    "transaction_id", "step", "customer", "age", "gender", "merchant", "category", "amount",
    "amount_zscore", "amount_over_customer_mean", "customer_prior_count", LABEL_COL, PROBABILITY_COL,
]  # fmt: skip

#: The two kinds of error :func:`worst_errors` lists.
ERROR_KINDS = ("false_positive", "false_negative")


def _is_fraud() -> Column:
    return F.coalesce(F.col(LABEL_COL) == 1, F.lit(False))


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a double, null when the denominator is 0."""
    return F.try_divide(numerator.cast("double"), F.nullif(denominator, F.lit(0)).cast("double"))


def _fraud_rate() -> Column:
    """Frauds over labelled rows (an aggregate), null when no row carries a label."""
    return _ratio(F.count_if(_is_fraud()), F.count(F.col(LABEL_COL)))


def sample_customers(df: DataFrame, share: float, seed: int = 42) -> DataFrame:
    """The rows of a pseudo-random ``share`` of the customers, every row of each kept customer.

    Sampling whole customers (by a hash of ``customer`` and ``seed``) keeps each
    kept customer's history intact, so history features computed on the sample
    are the ones the full data gives; a row sample would cut histories short.
    ``share`` 1.0 returns ``df`` unchanged.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    if share == 1.0:
        return df
    buckets = 10_000
    bucket = F.pmod(F.xxhash64(F.col("customer"), F.lit(int(seed))), F.lit(buckets))
    return df.where(bucket < F.lit(int(round(share * buckets))))


def overview(df: DataFrame) -> DataFrame:
    """One row: ``rows``, ``frauds``, ``fraud_rate``, ``customers``, ``merchants``, ``categories``, ``first_step``, ``last_step``."""
    return df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(_is_fraud()).alias("frauds"),
        _fraud_rate().alias("fraud_rate"),
        F.count_distinct("customer").alias("customers"),
        F.count_distinct("merchant").alias("merchants"),
        F.count_distinct("category").alias("categories"),
        F.min("step").alias("first_step"),
        F.max("step").alias("last_step"),
    )


def fraud_rate_by(df: DataFrame, column: str) -> DataFrame:
    """Transactions, frauds and fraud rate per value of ``column``, highest fraud rate first.

    Columns: ``column``, ``rows``, ``frauds``, ``fraud_rate`` (frauds over
    labelled rows). Ties go to the busier value, then to the value itself.
    """
    return (
        df.groupBy(column)
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if(_is_fraud()).alias("frauds"),
             _fraud_rate().alias("fraud_rate"))
        .select(column, "rows", "frauds", "fraud_rate")
        .orderBy(F.col("fraud_rate").desc_nulls_last(), F.col("rows").desc(), F.col(column))
    )


def volume_by_step(df: DataFrame) -> DataFrame:
    """Per ``step`` (one day): ``rows``, ``frauds``, ``fraud_rate`` and the summed ``amount``, in step order."""
    return (
        df.groupBy("step")
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if(_is_fraud()).alias("frauds"),
             _fraud_rate().alias("fraud_rate"), F.round(F.sum("amount"), 2).alias("amount"))
        .orderBy("step")
    )


def log_edges(low: float, high: float, bins: int) -> list[float]:
    """``bins + 1`` geometrically spaced edges from ``low`` to ``high`` (both > 0)."""
    if not 0 < low < high or bins < 1:
        raise ValueError("log_edges needs 0 < low < high and bins >= 1")
    ratio = (high / low) ** (1.0 / bins)
    return [low * ratio**i for i in range(bins)] + [float(high)]


def probability_edges(bins: int = 40) -> list[float]:
    """The inner edges that cut [0, 1] into ``bins`` equal bins (for :func:`binned_by_label` on a probability)."""
    if bins < 2:
        raise ValueError("probability_edges needs bins >= 2")
    return [i / bins for i in range(1, bins)]


def _edge_text(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable names of the bins of :func:`fraudlab.drift.bin_index`: ``< e0``, ``e0-e1``, ..., ``>= e_last``."""
    if not edges:
        return ["all"]
    inner = [f"{_edge_text(lo)}-{_edge_text(hi)}" for lo, hi in zip(edges, edges[1:])]
    return [f"< {_edge_text(edges[0])}", *inner, f">= {_edge_text(edges[-1])}"]


def binned_by_label(df: DataFrame, column: str, edges: Sequence[float]) -> DataFrame:
    """Labelled rows per bin of ``column``, frauds and legitimate ones apart, every bin listed.

    Bins are those of :func:`fraudlab.drift.bin_index`: ``[-inf, e0)``,
    ``[e0, e1)``, ..., ``[e_last, +inf]``. Columns: ``range`` (from
    :func:`bin_labels`), ``bin``, ``lower``, ``upper`` (infinite at the open
    ends), ``rows``, ``frauds``, ``legit``, ``fraud_rate`` (null for an empty
    bin), ``fraud_share`` and ``legit_share`` (the bin's share of all frauds,
    of all legitimate rows). Rows with a null value or label are left out.
    """
    edges = [float(e) for e in edges]
    if edges != sorted(edges):
        raise ValueError("edges must be increasing")
    counts = (
        df.select(fdrift.bin_index(F.col(column).cast("double"), edges).alias("bin"), F.col(LABEL_COL))
        .where(F.col("bin").isNotNull() & F.col(LABEL_COL).isNotNull())
        .groupBy("bin")
        .agg(F.count_if(F.col(LABEL_COL) == 1).alias("frauds"), F.count_if(F.col(LABEL_COL) != 1).alias("legit"))
    )
    totals = counts.agg(F.sum("frauds").alias("_all_frauds"), F.sum("legit").alias("_all_legit"))

    def per_bin(values: list) -> Column:
        return F.element_at(F.array(*[F.lit(v) for v in values]), F.col("bin") + 1)  # element_at is 1-based

    frauds, legit = F.coalesce(F.col("frauds"), F.lit(0)), F.coalesce(F.col("legit"), F.lit(0))
    return (
        df.sparkSession.range(len(edges) + 1).select(F.col("id").cast("int").alias("bin"))
        .join(counts, on="bin", how="left")
        .crossJoin(F.broadcast(totals))
        .select(
            per_bin(bin_labels(edges)).alias("range"),
            "bin",
            per_bin([-math.inf, *edges]).alias("lower"),
            per_bin([*edges, math.inf]).alias("upper"),
            (frauds + legit).alias("rows"),
            frauds.alias("frauds"),
            legit.alias("legit"),
            _ratio(frauds, frauds + legit).alias("fraud_rate"),
            F.coalesce(_ratio(frauds, F.col("_all_frauds")), F.lit(0.0)).alias("fraud_share"),
            F.coalesce(_ratio(legit, F.col("_all_legit")), F.lit(0.0)).alias("legit_share"),
        )
        .orderBy("bin")
    )


def quantiles_by_label(df: DataFrame, column: str, probabilities: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99),
                       accuracy: int = 10_000) -> DataFrame:
    """Per label (``fraud`` 0 and 1): ``rows`` and approximate quantiles of ``column`` as ``p10``, ``p50``, ..."""
    names = [f"p{round(p * 100):g}" for p in probabilities]
    quantiles = F.percentile_approx(F.col(column), [float(p) for p in probabilities], accuracy)
    return (
        df.where(F.col(LABEL_COL).isNotNull())
        .groupBy(LABEL_COL)
        .agg(F.count(F.lit(1)).alias("rows"), quantiles.alias("_q"))
        .select(LABEL_COL, "rows", *[F.col("_q")[i].alias(name) for i, name in enumerate(names)])
        .orderBy(LABEL_COL)
    )


def worst_errors(scored: DataFrame, threshold: float, kind: str, n: int = 10,
                 columns: Sequence[str] = ERROR_COLUMNS) -> DataFrame:
    """The ``n`` most confident mistakes at ``threshold`` (a row is flagged when its probability is >= it).

    ``kind`` ``"false_positive"``: legitimate rows flagged, highest
    ``fraud_probability`` first. ``"false_negative"``: frauds let through,
    lowest probability first. Ties go by ``transaction_id`` (when present) so
    the list is the same on every run. Keeps those of ``columns`` that
    ``scored`` has.
    """
    flagged = F.col(PROBABILITY_COL) >= F.lit(float(threshold))
    if kind == "false_positive":
        is_error, order = flagged & (F.col(LABEL_COL) == 0), F.col(PROBABILITY_COL).desc()
    elif kind == "false_negative":
        is_error, order = ~flagged & (F.col(LABEL_COL) == 1), F.col(PROBABILITY_COL).asc()
    else:
        raise ValueError(f"kind must be one of {ERROR_KINDS}, got {kind!r}")
    tie_break = [F.col("transaction_id")] if "transaction_id" in scored.columns else []
    kept = [c for c in columns if c in scored.columns]
    return scored.where(is_error).orderBy(order, *tie_break).select(*kept).limit(int(n))
