"""Drift: the training distribution saved with a model, and the population-stability index of new data.

At training, :func:`drift_reference` keeps the deciles and the bin shares of the model's numeric
features (:data:`DRIFT_FEATURES`); when scoring, :func:`drift_bin_counts` bins new rows in Spark
exactly as Bucketizer did at training, and :func:`population_stability` does the arithmetic on the
few collected counts (:func:`drift_figures` does both for an app).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.ml.feature import Bucketizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

#: Numeric features whose training distribution is kept for the population-stability index.
DRIFT_FEATURES: list[str] = ["amount", "amount_zscore", "amount_over_customer_mean", "customer_prior_count"]

#: PSI below this is "stable", below :data:`PSI_SIGNIFICANT` "moderate", else "significant" (the usual cut-offs).
PSI_MODERATE = 0.10
PSI_SIGNIFICANT = 0.25


# --------------------------------------------------------------------------- the training reference


def drift_bins(edges: list[float]) -> list[float]:
    """Bucketizer splits for inner bin ``edges``: ``[-inf, *edges, +inf]``."""
    return [-math.inf, *edges, math.inf]


def bin_shares(df: DataFrame, column: str, edges: list[float]) -> list[float]:
    """Share of ``df``'s rows in each bin ``[-inf, e0), [e0, e1), ..., [e_last, +inf]`` (an action).

    Uses MLlib's ``Bucketizer``, so scoring can bin new data the same way. Null or
    NaN values are left out.
    """
    counts, _ = _bin_counts(df, {column: edges})
    return _shares(counts[column])


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _bin_counts(df: DataFrame, edges_by_column: dict[str, list[float]]) -> tuple[dict[str, list[int]], int]:
    """Rows per bin of several columns, and the number of rows, in one pass over ``df``."""
    columns = list(edges_by_column)
    numeric = df.select(*[F.col(c).cast("double").alias(c) for c in columns])
    binned = {c: f"_bin_{i}" for i, c in enumerate(columns) if edges_by_column[c]}
    if binned:
        # handleInvalid="keep" puts null and NaN into one extra bin, which is not counted
        numeric = Bucketizer(splitsArray=[drift_bins(edges_by_column[c]) for c in binned],
                             inputCols=list(binned), outputCols=list(binned.values()),
                             handleInvalid="keep").transform(numeric)
    counters = []
    for c in columns:
        if c in binned:
            counters += [F.count_if(F.col(binned[c]) == F.lit(float(i))).alias(f"{c}#{i}")
                         for i in range(len(edges_by_column[c]) + 1)]
        else:  # no edges (no finite values): one bin, Bucketizer needs at least one edge
            counters.append(F.count_if(F.col(c).isNotNull() & ~F.isnan(F.col(c))).alias(f"{c}#0"))
    row = numeric.agg(F.count(F.lit(1)).alias("_rows"), *counters).first()
    counts = {c: [int(row[f"{c}#{i}"]) for i in range(len(edges_by_column[c]) + 1)] for c in columns}
    return counts, int(row["_rows"])


def drift_reference(df: DataFrame, columns: list[str] = DRIFT_FEATURES, quantiles: int = 10,
                    relative_error: float = 0.001) -> dict[str, Any]:
    """The training distribution of ``columns`` for a population-stability index (two Spark jobs).

    Bin edges are the deciles (for ``quantiles=10``) of ``df``; repeated edges
    (a feature with many equal values) are merged. Layout::

        {"quantiles": 10, "rows": n, "bin_rule": "...",
         "features": {name: {"edges": [...], "shares": [...]}}}

    with ``len(shares) == len(edges) + 1``.
    """
    probabilities = [i / quantiles for i in range(1, quantiles)]
    numeric = df.select(*[F.col(c).cast("double").alias(c) for c in columns])
    edge_lists = numeric.approxQuantile(columns, probabilities, relative_error)
    edges_by_column = {
        column: sorted(set(float(e) for e in raw if e is not None and math.isfinite(e)))
        for column, raw in zip(columns, edge_lists)
    }
    counts, rows = _bin_counts(numeric, edges_by_column)
    return {
        "quantiles": quantiles,
        "rows": rows,
        "bin_rule": "bins are [-inf, e0), [e0, e1), ..., [e_last, +inf] "
                    "(pyspark.ml.feature.Bucketizer with splits [-inf, *edges, +inf])",
        "features": {c: {"edges": edges_by_column[c], "shares": _shares(counts[c])} for c in columns},
    }


def population_stability_index(expected: list[float], actual: list[float], floor: float = 1e-4) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, with shares floored at ``floor`` to keep it finite."""
    if len(expected) != len(actual):
        raise ValueError("expected and actual shares need the same bins")
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, floor), max(a, floor)
        total += (a - e) * math.log(a / e)
    return total


# --------------------------------------------------------------------------- new data against it


def _reference_features(reference: Mapping[str, Any]) -> dict[str, dict[str, list[float]]]:
    features = reference.get("features", reference)
    return {name: {"edges": [float(e) for e in spec["edges"]], "shares": [float(s) for s in spec["shares"]]}
            for name, spec in features.items()}


def bin_index(value: Column, edges: list[float]) -> Column:
    """Bin of ``value`` for inner ``edges``: 0 for ``[-inf, e0)``, i for ``[e_{i-1}, e_i)``, and
    ``len(edges)`` for ``[e_last, +inf]``.

    The same bins as Bucketizer with splits ``[-inf, *edges, +inf]``
    (:func:`drift_bins`); null for a null or NaN value.
    """
    index = F.lit(0)
    for edge in edges:
        index = index + (value >= F.lit(float(edge))).cast("int")
    return F.when(value.isNull() | F.isnan(value), F.lit(None).cast("int")).otherwise(index)


def drift_bin_counts(df: DataFrame, reference: Mapping[str, Any]) -> DataFrame:
    """Rows per reference bin for each reference feature found in ``df``: ``feature``, ``bin``, ``rows``.

    ``reference`` is the drift reference saved with the model
    (``{"features": {name: {"edges": [...], "shares": [...]}}}``). One pass over
    ``df``; empty bins are absent.
    """
    features = {name: spec for name, spec in _reference_features(reference).items() if name in df.columns}
    if not features:
        return df.sparkSession.createDataFrame([], "feature string, bin int, rows long")
    binned = F.array(
        *[
            F.struct(F.lit(name).alias("feature"),
                     bin_index(F.col(name).cast("double"), spec["edges"]).alias("bin"))
            for name, spec in features.items()
        ]
    )
    return (
        df.select(F.explode(binned).alias("b"))
        .select("b.feature", "b.bin")
        .where(F.col("bin").isNotNull())
        .groupBy("feature", "bin")
        .agg(F.count(F.lit(1)).alias("rows"))
    )


def psi_status(psi: float) -> str:
    """``'stable'``, ``'moderate'`` or ``'significant'`` by the usual PSI cut-offs."""
    if psi < PSI_MODERATE:
        return "stable"
    return "moderate" if psi < PSI_SIGNIFICANT else "significant"


def population_stability(
    counts: Iterable[Mapping[str, Any]], reference: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """PSI per feature from the collected rows of :func:`drift_bin_counts`.

    Returns ``{feature: {"psi", "status", "rows", "shares", "reference_shares"}}``
    for the features that had counts; ``psi`` is
    :func:`population_stability_index` of the two share lists.
    """
    features = _reference_features(reference)
    per_feature: dict[str, dict[int, int]] = {}
    for row in counts:
        per_feature.setdefault(row["feature"], {})[int(row["bin"])] = int(row["rows"])
    result: dict[str, dict[str, Any]] = {}
    for name in sorted(per_feature):
        expected = features[name]["shares"]
        bins = per_feature[name]
        total = sum(bins.values())
        actual = [bins.get(i, 0) / total for i in range(len(expected))]
        psi = population_stability_index(expected, actual)
        result[name] = {"psi": psi, "status": psi_status(psi), "rows": total,
                        "shares": actual, "reference_shares": expected}
    return result


def drift_figures(df: DataFrame, reference: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """:func:`population_stability` of ``df`` against ``reference`` (one small Spark job); ``{}`` without one."""
    if not reference:
        return {}
    return population_stability(drift_bin_counts(df, reference).collect(), reference)
