"""Feature definitions shared by training, batch scoring and streaming.

Pure DataFrame functions, no I/O. Customer-history features look only at the
customer's *earlier steps* (a window that ends one step before the row's own),
so a row never sees its future and a stream that keeps per-customer state can
compute the same numbers. The amount's z-score within its category uses
statistics fitted on training data and carried with the model.
"""

from __future__ import annotations

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


def add_customer_history(df: DataFrame) -> DataFrame:
    """Add the customer's earlier transaction count, earlier mean amount and the ratio to it.

    Only earlier steps count: a customer's first step has count 0, no mean, and
    a ratio of 1.0.
    """
    window = customer_history_window()
    prior_count = F.count(F.col("amount")).over(window)
    prior_mean = F.avg(F.col("amount")).over(window)
    return (
        df.withColumn("customer_prior_count", prior_count.cast("double"))
        .withColumn("customer_prior_mean_amount", prior_mean)
        .withColumn("amount_over_customer_mean", amount_over_mean(F.col("amount"), F.col("customer_prior_mean_amount")))
    )


def category_amount_stats(df: DataFrame) -> DataFrame:
    """Mean and standard deviation of the amount per category (fit on training rows only)."""
    return df.groupBy("category").agg(
        F.avg("amount").alias("category_mean_amount"),
        F.stddev_samp("amount").alias("category_std_amount"),
    )


def zscore(amount: Column, mean: Column, std: Column) -> Column:
    """(amount - mean) / std; 0.0 for an unknown category or a zero spread."""
    return F.coalesce(F.try_divide(amount - mean, F.nullif(std, F.lit(0.0))), F.lit(0.0))


def add_amount_zscore(df: DataFrame, stats: DataFrame) -> DataFrame:
    """Add ``amount_zscore``: the amount's z-score within its category, from ``stats``."""
    return (
        df.join(F.broadcast(stats), on="category", how="left")
        .withColumn(
            "amount_zscore",
            zscore(F.col("amount"), F.col("category_mean_amount"), F.col("category_std_amount")),
        )
        .drop("category_mean_amount", "category_std_amount")
    )


def add_log_amount(df: DataFrame) -> DataFrame:
    """Add ``log_amount`` = ln(1 + amount), which tames BankSim's long right tail."""
    return df.withColumn("log_amount", F.log1p(F.col("amount")))


def add_features(df: DataFrame, stats: DataFrame) -> DataFrame:
    """Every model feature on prepared transactions, given the category statistics."""
    return add_amount_zscore(add_log_amount(add_customer_history(df)), stats)
