"""What the lab's notebooks compute and draw, kept out of their cells so it is tested once.

``notebooks/01_explore_transactions.ipynb``, ``02_model_analysis.ipynb`` and
``03_streaming_inspection.ipynb`` are thin: a parameters cell, then calls into
this module and :mod:`fraudlab.train`, :mod:`fraudlab.features`,
:mod:`fraudlab.registry`. Four kinds of function live here:

* **Spark transforms** (lazy and pure, ``DataFrame -> DataFrame``):
  :func:`sample_customers`, :func:`overview`, :func:`fraud_rate_by`,
  :func:`volume_by_step`, :func:`binned_by_label`, :func:`quantiles_by_label`,
  :func:`worst_errors`. Their results are small; the notebook collects them
  with ``toPandas()``.
* **Bins and summaries of collected figures** (plain Python / pandas):
  :func:`log_edges`, :func:`probability_edges`, :func:`bin_labels`,
  :func:`alerts_per_day_vs_recall`, :func:`operating_point`,
  :func:`recall_levels`, :func:`drift_table`, :func:`decode_records`,
  :func:`per_minute_throughput`; and :func:`feature_weights`, which runs a
  small Spark job on the fitted model and says so.
* **Figures**: every ``*_figure`` function takes collected (pandas) tables and
  returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, so no
  global figure state leaks between cells and nothing is drawn twice; Jupyter
  shows a Figure that ends a cell.
* **Service reads** for the streaming notebook: :func:`connect_cassandra`,
  :func:`read_cassandra_table`, :func:`latest_alerts` (cassandra-driver) and
  :func:`read_topic_tail` (kafka-python).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab import drift as fdrift
from fraudlab.io import cassandra, kafka
from fraudlab.train import pipeline as train_pipeline
from fraudlab.schemas import ALERT_TABLE_COLUMNS, ALERTS_TABLE

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

_FRAUD_COLOUR = "#d62728"
_LEGIT_COLOUR = "#1f77b4"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- Spark transforms


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


# --------------------------------------------------------------------------- summaries of collected figures


def alerts_per_day_vs_recall(table: Sequence[Mapping[str, float]], days: int) -> pd.DataFrame:
    """The threshold trade-off: for each threshold, the recall reached and the alerts it costs per day.

    ``table`` is :func:`fraudlab.train.metrics.threshold_table` output (thresholds
    falling, recall rising) over ``days`` days of transactions. Columns:
    ``threshold``, ``recall``, ``precision``, ``flagged``, ``alerts_per_day``.
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    frame = pd.DataFrame(list(table), columns=["threshold", "recall", "precision", "flagged"])
    frame["alerts_per_day"] = frame["flagged"] / float(days)
    return frame


def operating_point(confusion: Mapping[str, float], days: int) -> dict[str, float]:
    """The model's own threshold as a point of the trade-off: :func:`fraudlab.train.metrics.confusion_at` plus ``alerts_per_day``."""
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    return {**confusion, "alerts_per_day": (confusion["tp"] + confusion["fp"]) / float(days)}


def recall_levels(tradeoff: pd.DataFrame, levels: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)) -> pd.DataFrame:
    """For each recall level, the highest threshold that reaches it and what it costs.

    ``tradeoff`` is :func:`alerts_per_day_vs_recall` output. A level no
    threshold reaches is left out. Columns: ``recall_at_least``,
    ``threshold``, ``recall``, ``precision``, ``alerts_per_day``.
    """
    rows = []
    for level in levels:
        reached = tradeoff[tradeoff["recall"] >= level - 1e-12]
        if reached.empty:
            continue
        best = reached.loc[reached["threshold"].idxmax()]
        rows.append({"recall_at_least": level, "threshold": best["threshold"], "recall": best["recall"],
                     "precision": best["precision"], "alerts_per_day": best["alerts_per_day"]})
    return pd.DataFrame(rows, columns=["recall_at_least", "threshold", "recall", "precision", "alerts_per_day"])


def drift_table(scoring_metrics: Mapping[str, Any]) -> pd.DataFrame:
    """``feature``, ``psi``, ``status`` from score_claims' ``_metrics.json``, largest PSI first."""
    drift = scoring_metrics.get("drift") or {}
    statuses = scoring_metrics.get("drift_status") or {}
    rows = [{"feature": name, "psi": float(psi), "status": statuses.get(name, fdrift.psi_status(float(psi)))}
            for name, psi in drift.items()]
    frame = pd.DataFrame(rows, columns=["feature", "psi", "status"])
    return frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)


def feature_weights(pipeline_model: PipelineModel, df: DataFrame) -> tuple[pd.DataFrame, str]:
    """How much each model feature weighs, largest first, and what the weight is (an action).

    A tree model gives its feature importances. A linear model's raw
    coefficients are not comparable (the features are not scaled), so each
    coefficient is multiplied by its feature's standard deviation on ``df``
    (model-input rows): the change in log-odds for a one-standard-deviation
    change of the feature. Other models give an empty frame. Returns
    ``(frame with feature and weight, description of the weight)``.
    """
    classifier = pipeline_model.stages[-1]
    if hasattr(classifier, "featureImportances"):
        weights = train_pipeline.feature_importances(pipeline_model, df)
        kind = "feature importance"
    elif hasattr(classifier, "coefficients"):
        from pyspark.ml.stat import Summarizer

        features = PipelineModel(stages=pipeline_model.stages[:-1]).transform(df)
        std = features.select(Summarizer.std(F.col(train_pipeline.FEATURES_COL)).alias("std")).first()["std"].toArray()
        names = train_pipeline.feature_names(pipeline_model, df)
        coefficients = classifier.coefficients.toArray()
        weights = {name: abs(float(c)) * float(s) for name, c, s in zip(names, coefficients, std)}
        kind = "|coefficient| x feature std"
    else:
        return pd.DataFrame(columns=["feature", "weight"]), "none"
    frame = pd.DataFrame(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])), columns=["feature", "weight"])
    return frame, kind


def decode_records(records: Iterable[Any]) -> pd.DataFrame:
    """Kafka records as a table: ``kafka_partition``, ``kafka_offset``, ``kafka_timestamp`` (UTC), ``key``, then the value's fields.

    ``records`` carry ``partition``, ``offset``, ``timestamp`` (ms), ``key`` and
    ``value`` (bytes), like kafka-python's ``ConsumerRecord``. A JSON object
    value becomes one column per field; any other value stays whole in
    ``value``. Newest first.
    """
    rows = []
    for record in records:
        key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else record.key
        raw = record.value.decode("utf-8", "replace") if isinstance(record.value, bytes) else record.value
        try:
            payload = json.loads(raw) if raw is not None else None
        except json.JSONDecodeError:
            payload = None
        fields = payload if isinstance(payload, dict) else {"value": raw}
        rows.append({"kafka_partition": record.partition, "kafka_offset": record.offset,
                     "kafka_timestamp": record.timestamp, "key": key, **fields})
    # Columns in the order the fields first appear in the messages.
    columns = list(dict.fromkeys(["kafka_partition", "kafka_offset", "kafka_timestamp", "key",
                                  *(k for row in rows for k in row)]))
    frame = pd.DataFrame(rows, columns=columns)
    frame["kafka_timestamp"] = pd.to_datetime(frame["kafka_timestamp"], unit="ms", utc=True)
    return frame.sort_values(["kafka_timestamp", "kafka_partition", "kafka_offset"], ascending=False,
                             ignore_index=True)


def per_minute_throughput(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    """Rows per minute of ``time_column`` (UTC; naive times are read as UTC), every minute of the span listed.

    Columns: ``minute`` and ``rows``; minutes without rows count 0, so gaps
    show. An empty input gives an empty frame.
    """
    times = pd.to_datetime(frame[time_column], utc=True).dropna() if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    if times.empty:
        return pd.DataFrame({"minute": pd.Series([], dtype="datetime64[ns, UTC]"), "rows": pd.Series([], dtype="int64")})
    minutes = times.dt.floor("min")
    counts = minutes.value_counts().sort_index()
    span = pd.date_range(minutes.min(), minutes.max(), freq="min")
    counts = counts.reindex(span, fill_value=0)
    return pd.DataFrame({"minute": span, "rows": counts.to_numpy(dtype="int64")})


# --------------------------------------------------------------------------- figures


def _figure(panels: int = 1, width: float = 7.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * panels if panels > 1 else width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    return fig, list(axes) if panels > 1 else [axes]


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def fraud_rate_figure(tables: Mapping[str, pd.DataFrame], title: str) -> Figure:
    """One horizontal bar panel per table: the fraud rate (%) of each group, in the table's order, top down.

    Each table's first column names the groups (e.g. :func:`fraud_rate_by` or
    :func:`binned_by_label` output collected); it needs ``rows``, ``frauds``
    and ``fraud_rate``. Each bar is labelled ``frauds / rows``.
    """
    fig, axes = _figure(len(tables), width=6.0 if len(tables) > 1 else 8.0,
                        height=max(3.0, 0.28 * max((len(t) for t in tables.values()), default=1) + 1.2))
    for ax, (name, table) in zip(axes, tables.items()):
        if table.empty:
            _empty(ax, f"no rows for {name}")
            continue
        groups = [str(g) for g in table.iloc[:, 0]]
        rates = [0.0 if pd.isna(r) else 100.0 * float(r) for r in table["fraud_rate"]]
        positions = list(range(len(groups)))
        ax.barh(positions, rates, color=_FRAUD_COLOUR)
        ax.set_yticks(positions, groups)
        ax.invert_yaxis()
        for y, rate, frauds, rows in zip(positions, rates, table["frauds"], table["rows"]):
            ax.text(rate, y, f" {int(frauds):,}/{int(rows):,}", va="center", fontsize=7)
        ax.set_xlabel("fraud rate (%)")
        ax.set_xlim(0, max(rates) * 1.3 or 1.0)
        if len(tables) > 1:
            ax.set_title(name)
    fig.suptitle(title)
    return fig


def _finite_edges(binned: pd.DataFrame, domain: tuple[float, float]) -> list[float]:
    """The bins' edges with the open ends closed at ``domain``."""
    lowers = [domain[0] if math.isinf(v) else float(v) for v in binned["lower"]]
    return [*lowers, domain[1] if math.isinf(float(binned["upper"].iloc[-1])) else float(binned["upper"].iloc[-1])]


def label_distribution_figure(binned: pd.DataFrame, title: str, xlabel: str, domain: tuple[float, float],
                              log_x: bool = False, log_y: bool = False, marker: float | None = None,
                              marker_label: str = "threshold") -> Figure:
    """Frauds and legitimate rows over the bins of one column, each as a share of its own class.

    ``binned`` is :func:`binned_by_label` output collected; the open end bins
    are drawn from/to ``domain``. Drawing shares, not counts, puts 1 % of
    frauds and 99 % of legitimate rows on one scale. ``marker`` draws a
    vertical line (e.g. the decision threshold).
    """
    fig, (ax,) = _figure(1, width=8.0)
    if binned.empty or int(binned["rows"].sum()) == 0:
        _empty(ax, "no labelled rows")
        return fig
    edges = _finite_edges(binned, domain)
    ax.stairs(binned["legit_share"], edges, label=f"legitimate ({int(binned['legit'].sum()):,})",
              color=_LEGIT_COLOUR, linewidth=1.5)
    # A filled area needs a zero baseline, which a log scale cannot draw: outline only there.
    ax.stairs(binned["fraud_share"], edges, label=f"fraud ({int(binned['frauds'].sum()):,})",
              color=_FRAUD_COLOUR, linewidth=1.5, fill=not log_y, alpha=0.35 if not log_y else 1.0)
    if marker is not None:
        ax.axvline(marker, color="black", linestyle="--", linewidth=1, label=f"{marker_label} {marker:.3g}")
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of the class's rows")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def steps_figure(by_step: pd.DataFrame, title: str) -> Figure:
    """Transactions per step as bars and frauds per step as a line (right axis); :func:`volume_by_step` collected."""
    fig, (ax,) = _figure(1, width=10.0)
    if by_step.empty:
        _empty(ax, "no transactions")
        return fig
    ax.bar(by_step["step"], by_step["rows"], width=1.0, color="#c8d6e5", label="transactions")
    ax.set_xlabel("step (day)")
    ax.set_ylabel("transactions per step")
    right = ax.twinx()
    right.plot(by_step["step"], by_step["frauds"], color=_FRAUD_COLOUR, linewidth=1.2, label="frauds")
    right.set_ylabel("frauds per step", color=_FRAUD_COLOUR)
    right.set_ylim(0, max(1, int(by_step["frauds"].max())) * 1.2)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left")
    ax.set_title(title)
    return fig


def precision_recall_figure(tradeoff: pd.DataFrame, point: Mapping[str, float], title: str) -> Figure:
    """The precision-recall curve of :func:`alerts_per_day_vs_recall` rows, with the model's threshold marked."""
    fig, (ax,) = _figure(1, width=6.0, height=4.5)
    if tradeoff.empty:
        _empty(ax, "no scored rows")
        return fig
    recall = [0.0, *tradeoff["recall"]]
    precision = [float(tradeoff["precision"].iloc[0]), *tradeoff["precision"]]
    ax.plot(recall, precision, drawstyle="steps-post", color=_LEGIT_COLOUR)
    ax.scatter([point["recall"]], [point["precision"]], color=_FRAUD_COLOUR, zorder=3,
               label=f"threshold {point['threshold']:.4f}: precision {point['precision']:.2f}, "
                     f"recall {point['recall']:.2f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def alerts_vs_recall_figure(tradeoff: pd.DataFrame, point: Mapping[str, float], title: str) -> Figure:
    """Alerts per day (log scale) needed for each recall, with the model's threshold marked."""
    fig, (ax,) = _figure(1, width=6.0, height=4.5)
    if tradeoff.empty:
        _empty(ax, "no scored rows")
        return fig
    ax.plot(tradeoff["recall"], tradeoff["alerts_per_day"], drawstyle="steps-pre", color=_LEGIT_COLOUR)
    ax.scatter([point["recall"]], [max(point["alerts_per_day"], 1e-3)], color=_FRAUD_COLOUR, zorder=3,
               label=f"threshold {point['threshold']:.4f}: {point['alerts_per_day']:.3g} alerts/day, "
                     f"recall {point['recall']:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("recall (share of frauds caught)")
    ax.set_ylabel("alerts per day")
    ax.set_xlim(0, 1.02)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    return fig


def importance_figure(weights: pd.DataFrame, kind: str, title: str, top_n: int = 15) -> Figure:
    """The ``top_n`` heaviest features of :func:`feature_weights` as horizontal bars, heaviest on top."""
    shown = weights.head(top_n)
    fig, (ax,) = _figure(1, width=8.0, height=max(3.0, 0.3 * len(shown) + 1.2))
    if shown.empty:
        _empty(ax, "this model exposes no feature weights")
        return fig
    positions = list(range(len(shown)))
    ax.barh(positions, shown["weight"], color=_LEGIT_COLOUR)
    ax.set_yticks(positions, list(shown["feature"]))
    ax.invert_yaxis()
    ax.set_xlabel(kind)
    ax.set_title(title)
    return fig


def drift_figure(drift: pd.DataFrame, title: str) -> Figure:
    """PSI per feature (:func:`drift_table` output) against the moderate and significant cut-offs."""
    fig, (ax,) = _figure(1, width=7.0, height=max(2.5, 0.45 * len(drift) + 1.2))
    if drift.empty:
        _empty(ax, "the scoring run has no drift figures")
        return fig
    colours = {"stable": "#2ca02c", "moderate": "#ff7f0e", "significant": _FRAUD_COLOUR}
    positions = list(range(len(drift)))
    ax.barh(positions, drift["psi"], color=[colours.get(s, "grey") for s in drift["status"]])
    ax.set_yticks(positions, list(drift["feature"]))
    ax.invert_yaxis()
    ax.axvline(fdrift.PSI_MODERATE, color=colours["moderate"], linestyle="--", linewidth=1,
               label=f"moderate ({fdrift.PSI_MODERATE})")
    ax.axvline(fdrift.PSI_SIGNIFICANT, color=colours["significant"], linestyle="--", linewidth=1,
               label=f"significant ({fdrift.PSI_SIGNIFICANT})")
    ax.set_xlim(0, max(float(drift["psi"].max()), fdrift.PSI_SIGNIFICANT) * 1.15)
    ax.set_xlabel("population stability index")
    ax.legend(loc="lower right")
    ax.set_title(title)
    return fig


def throughput_figure(series: Mapping[str, pd.DataFrame], title: str) -> Figure:
    """One bar panel per :func:`per_minute_throughput` table: rows per minute (UTC)."""
    fig, axes = _figure(len(series), width=6.0 if len(series) > 1 else 9.0, height=3.8)
    for ax, (name, frame) in zip(axes, series.items()):
        if frame.empty:
            _empty(ax, f"no {name}")
            continue
        positions = list(range(len(frame)))
        ax.bar(positions, frame["rows"], color=_LEGIT_COLOUR)
        ax.set_xlim(-0.75, max(len(frame), 5) - 0.25)  # a minute or two stay bars, not walls
        step = max(1, len(frame) // 12)
        ax.set_xticks(positions[::step], [m.strftime("%H:%M") for m in frame["minute"]][::step], rotation=45)
        ax.set_xlabel(f"minute (UTC), from {frame['minute'].iloc[0]:%Y-%m-%d %H:%M}")
        ax.set_ylabel("rows per minute")
        ax.set_title(name)
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- service reads


def connect_cassandra(hosts: Sequence[str], port: int, keyspace: str, timeout: float = 10.0):
    """A cassandra-driver ``Session`` on ``keyspace`` (:func:`fraudlab.io.cassandra.connect`);
    close it with ``session.cluster.shutdown()``."""
    return cassandra.connect(hosts, port, keyspace, timeout)


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain CQL identifier")
    return name


def _plain(value: Any) -> Any:
    """Driver types pandas cannot order (``cassandra.util.Date``) as their Python equivalent."""
    return value.date() if type(value).__name__ == "Date" and hasattr(value, "date") else value


def read_cassandra_table(session, table: str, columns: Sequence[str] | None = None, where: str | None = None,
                         parameters: Sequence[Any] | None = None, limit: int | None = None,
                         fetch_size: int = 1000) -> pd.DataFrame:
    """``SELECT columns FROM table [WHERE where] [LIMIT limit]`` as a pandas frame (all pages fetched).

    ``where`` is CQL with ``%s`` placeholders for ``parameters``; table and
    column names must be plain identifiers. A table read without a partition
    key in ``where`` is a full scan: give a ``limit``.
    """
    from cassandra.query import SimpleStatement

    selected = ", ".join(_check_identifier(c) for c in columns) if columns else "*"
    cql = f"SELECT {selected} FROM {_check_identifier(table)}"
    if where:
        cql += f" WHERE {where}"
    if limit is not None:
        cql += f" LIMIT {int(limit)}"
    result = session.execute(SimpleStatement(cql, fetch_size=fetch_size), parameters)
    names = list(result.column_names or columns or [])
    rows = [[_plain(v) for v in row] for row in result]
    return pd.DataFrame(rows, columns=names)


def latest_alerts(session, n: int = 20, table: str = ALERTS_TABLE) -> pd.DataFrame:
    """The ``n`` latest alerts: newest alert days first, newest event time first within a day.

    Follows the table's design (one partition per ``alert_date``, clustered by
    ``event_time`` descending): finds the days, then reads the newest ones until
    ``n`` rows are in. Columns come in the stream's order
    (:data:`fraudlab.schemas.ALERT_TABLE_COLUMNS`), not Cassandra's.
    """
    days = sorted((_plain(row[0]) for row in session.execute(f"SELECT DISTINCT alert_date FROM {_check_identifier(table)}")),
                  reverse=True)
    frames, remaining = [], int(n)
    for day in days:
        if remaining <= 0:
            break
        frame = read_cassandra_table(session, table, where="alert_date = %s", parameters=[day], limit=remaining)
        frames.append(frame)
        remaining -= len(frame)
    if frames:
        alerts = pd.concat(frames, ignore_index=True)
    else:
        # CQL has no LIMIT 0: the empty frame takes the table's columns from the schema metadata.
        alerts = pd.DataFrame(columns=list(session.cluster.metadata.keyspaces[session.keyspace].tables[table].columns))
    ordered = [c for c in ALERT_TABLE_COLUMNS if c in alerts.columns]
    return alerts[ordered + [c for c in alerts.columns if c not in ordered]]


def read_topic_tail(bootstrap_servers: str, topic: str, last_n: int = 100, timeout_s: float = 15.0) -> pd.DataFrame:
    """The last ``last_n`` records of every partition of ``topic``, decoded by :func:`decode_records`.

    Reads with a group-less consumer (nothing is committed, no other reader is
    disturbed) from ``end - last_n`` to the end offsets seen at the start;
    raises ``ValueError`` when the topic does not exist.
    """
    from kafka import TopicPartition

    consumer = kafka.consumer(bootstrap_servers, allow_auto_create_topics=False,  # a mistyped topic must not be created
                              client_id="fraudlab-notebook", request_timeout_ms=int(timeout_s * 1000) + 5000)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap_servers}")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        begin, end = consumer.beginning_offsets(assigned), consumer.end_offsets(assigned)
        start = {tp: max(begin[tp], end[tp] - int(last_n)) for tp in assigned}
        for tp in assigned:
            consumer.seek(tp, start[tp])
        wanted = sum(end[tp] - start[tp] for tp in assigned)
        records, deadline = [], time.monotonic() + timeout_s
        while len(records) < wanted and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < end[tp])
    finally:
        consumer.close()
    return decode_records(records)
