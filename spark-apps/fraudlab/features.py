"""Feature definitions shared by training, batch scoring and streaming.

Pure DataFrame functions, no I/O. Customer-history features look only at the
customer's *earlier steps* (a window that ends one step before the row's own),
so a row never sees its future and a stream that keeps per-customer state can
compute the same numbers. The amount's z-score within its category has one
implementation, a ``SQLTransformer`` statement with the training statistics
written into it (:func:`zscore_transformer`): the fitted model carries it as its
first stage, so batch scoring and the stream compute it exactly as training did.
"""

from __future__ import annotations

import math

from pyspark.ml.feature import SQLTransformer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

#: String columns the model one-hot encodes.
CATEGORICAL_FEATURES: list[str] = ["category", "merchant", "age", "gender"]

#: Numeric columns the model reads as they are.
NUMERIC_FEATURES: list[str] = [
    "amount",
    "log_amount",
    "amount_zscore",
    "amount_over_customer_mean",
    "customer_prior_count",
]

#: Columns the fitted pipeline reads: what a scoring input must carry (see :func:`model_input`).
MODEL_INPUT_COLUMNS: list[str] = [*CATEGORICAL_FEATURES, *[c for c in NUMERIC_FEATURES if c != "amount_zscore"]]

#: Columns the customer-history step adds.
HISTORY_COLUMNS: list[str] = ["customer_prior_count", "customer_prior_mean_amount", "amount_over_customer_mean"]


def customer_history_window() -> Window:
    """All of a customer's rows on strictly earlier steps."""
    return (
        Window.partitionBy("customer")
        .orderBy(F.col("step").cast("long"))
        .rangeBetween(Window.unboundedPreceding, -1)
    )


def amount_over_mean(amount: Column, prior_mean: Column) -> Column:
    """Amount divided by the customer's earlier mean; 1.0 when there is no usable history."""
    return F.coalesce(F.try_divide(amount, F.nullif(prior_mean, F.lit(0.0))), F.lit(1.0))


def add_history_from_totals(df: DataFrame, row_count: Column, amount_total: Column) -> DataFrame:
    """Add the customer-history columns where each row stands for ``row_count`` transactions of ``amount_total``.

    A transaction is one row of its amount; the stream also has stored summary
    rows (many earlier transactions as one count and one sum). Over the
    customer's strictly earlier steps: the transaction count, the mean amount
    (None without history) and the amount's ratio to that mean (1.0 without).
    """
    window = customer_history_window()
    prior_count = F.coalesce(F.sum(row_count).over(window), F.lit(0).cast("long"))
    prior_total = F.sum(amount_total).over(window)
    return (
        df.withColumn("customer_prior_count", prior_count.cast("double"))
        .withColumn("customer_prior_mean_amount",
                    F.when(F.col("customer_prior_count") > 0, prior_total / F.col("customer_prior_count")))
        .withColumn("amount_over_customer_mean", amount_over_mean(F.col("amount"), F.col("customer_prior_mean_amount")))
    )


def add_customer_history(df: DataFrame) -> DataFrame:
    """Add the customer's earlier transaction count, earlier mean amount and the ratio to it.

    Only earlier steps count: a customer's first step has count 0, no mean, and
    a ratio of 1.0.
    """
    return add_history_from_totals(df, F.lit(1).cast("long"), F.col("amount"))


def add_log_amount(df: DataFrame) -> DataFrame:
    """Add ``log_amount`` = ln(1 + amount), which tames BankSim's long right tail."""
    return df.withColumn("log_amount", F.log1p(F.col("amount")))


def model_input(df: DataFrame) -> DataFrame:
    """Prepared rows -> the same rows plus the customer-history features and ``log_amount``.

    ``amount_zscore`` is not added here: the pipeline's first stage computes it
    from the training statistics it carries.
    """
    return add_log_amount(add_customer_history(df))


def category_stats(df: DataFrame) -> dict[str, tuple[float, float | None]]:
    """``{category: (mean amount, sample std)}`` of ``df`` (an action; call it on training rows only).

    The std is ``None`` for a category with a single row; its z-score is then 0.
    """
    rows = df.groupBy("category").agg(
        F.avg("amount").alias("category_mean_amount"),
        F.stddev_samp("amount").alias("category_std_amount"),
    ).collect()
    return {
        r["category"]: (float(r["category_mean_amount"]),
                        None if r["category_std_amount"] is None else float(r["category_std_amount"]))
        for r in rows
    }


def stats_as_json(stats: dict[str, tuple[float, float | None]]) -> dict[str, dict[str, float | None]]:
    """``stats`` as ``metrics.json`` holds them: ``{category: {"mean": m, "std": s}}``, sorted."""
    return {c: {"mean": m, "std": s} for c, (m, s) in sorted(stats.items())}


def stats_from_json(saved: object) -> dict[str, tuple[float, float | None]]:
    """The statistics :func:`stats_as_json` wrote, back; ValueError when ``saved`` is not of that shape."""
    if not isinstance(saved, dict) or not saved:
        raise ValueError("no category statistics")
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    stats = {}
    for category, figures in saved.items():
        mean, std = (figures.get("mean"), figures.get("std")) if isinstance(figures, dict) else (None, None)
        if not number(mean) or not (std is None or number(std)):
            raise ValueError(f"category statistics of {category!r} are not numbers")
        stats[str(category)] = (float(mean), None if std is None else float(std))
    return stats


def _sql_double(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "CAST(NULL AS DOUBLE)"
    # The D suffix makes a DOUBLE literal (a bare 37.89 would be a DECIMAL).
    return f"{float(value)!r}D"


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def zscore_statement(stats: dict[str, tuple[float, float | None]]) -> str:
    """The ``SQLTransformer`` statement that adds ``amount_zscore`` from ``stats``.

    (amount - mean) / std, 0.0 for a category missing from ``stats`` or with a
    zero or unknown spread.
    """
    if not stats:
        raise ValueError("category statistics are empty: no training rows?")
    ordered = sorted(stats.items())
    mean = " ".join(f"WHEN {_sql_string(c)} THEN {_sql_double(m)}" for c, (m, _) in ordered)
    std = " ".join(f"WHEN {_sql_string(c)} THEN {_sql_double(s)}" for c, (_, s) in ordered)
    return (
        "SELECT *, coalesce(try_divide("
        f"amount - (CASE category {mean} END), "
        f"nullif(CASE category {std} END, 0.0D)), 0.0D) AS amount_zscore "
        "FROM __THIS__"
    )


def zscore_transformer(stats: dict[str, tuple[float, float | None]]) -> SQLTransformer:
    """The pipeline's first stage: adds ``amount_zscore`` from the embedded training statistics."""
    return SQLTransformer(statement=zscore_statement(stats))


def add_amount_zscore(df: DataFrame, stats: dict[str, tuple[float, float | None]]) -> DataFrame:
    """Add ``amount_zscore`` from ``stats`` (:func:`category_stats`): the model's own first stage."""
    return zscore_transformer(stats).transform(df)


def add_features(df: DataFrame, stats: dict[str, tuple[float, float | None]]) -> DataFrame:
    """Every model feature on prepared transactions, given the training category statistics."""
    return add_amount_zscore(model_input(df), stats)
