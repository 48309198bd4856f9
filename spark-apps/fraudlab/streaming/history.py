"""The customer history of a micro-batch: what the stream has already processed, plus the batch.

**Customer history in the stream.** Batch features look at a customer's rows on
strictly earlier steps (:mod:`fraudlab.features`). The stream cannot see the
future either, so its history is what it has already processed, kept in
Cassandra's ``customer_history`` table: one row per transaction, keyed
``((customer), step, transaction_id)``. For a micro-batch the sink reads, per
customer with ``s_min``/``s_max`` its earliest/latest step in the batch and
``W`` the duplicate-claim window: the count and sum of stored amounts on steps
``< s_min - W`` (one server-side aggregate) and the stored rows on steps
``s_min - W .. s_max`` (a few rows: what the duplicate rule needs).
:func:`add_stream_history` puts those rows next to the batch's own and runs the
very window of :func:`fraudlab.features.customer_history_window` over them, the
summary row weighing its count. After scoring, the batch's rows are upserted
into the table. Because history rows are keyed by ``transaction_id`` and stored
rows that are in the batch are ignored, replaying a batch (after a crash, a
restart from an older checkpoint, or the same transactions sent twice) gives the
same features and leaves the table as it was: nothing is counted twice. When
messages arrive in step order the stream's features and scores equal batch
scoring's. Out of order, steps still decide what is "earlier": a row counts
only the stored rows of its customer on smaller steps, so it never sees its
future; what it can miss is an earlier-step row that has not arrived yet when
its batch runs (batch scoring, reading the whole period, would count it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fraudlab import features, scoring


def history_requests(rows: Iterable[Mapping[str, Any]], window_steps: int) -> list[dict[str, Any]]:
    """Per customer of a batch's ``rows`` (each with ``customer`` and ``step``): ``context_from_step``
    (earliest step - ``window_steps``) and ``context_to_step`` (latest step).

    Stored rows on steps ``< context_from_step`` are needed only as a count and a
    sum; those from ``context_from_step`` to ``context_to_step`` row by row. Plain
    Python over the rows the driver already holds: no Spark job.
    """
    if window_steps < 0:
        raise ValueError("window_steps must be >= 0")
    bounds: dict[str, tuple[int, int]] = {}
    for row in rows:
        customer, step = row["customer"], int(row["step"])
        first, last = bounds.get(customer, (step, step))
        bounds[customer] = (min(first, step), max(last, step))
    return [{"customer": customer, "context_from_step": first - int(window_steps), "context_to_step": last}
            for customer, (first, last) in bounds.items()]


def add_stream_history(parsed: DataFrame, stored: DataFrame, window_steps: int,
                       partitions: int | None = None) -> DataFrame:
    """The batch's rows, each transaction once, plus the customer-history and duplicate-claim columns.

    ``stored`` holds what the history table returned (:data:`STORED_HISTORY_SCHEMA`).
    A transaction that is both in the batch and stored (a replayed batch) or in
    the batch twice (sent twice) counts once: the batch's copy with the earliest
    offset is kept. The history features come from the batch side's own
    :func:`fraudlab.features.add_history_from_totals` over stored + batch rows;
    ``duplicate_claim``/``duplicate_of`` from :func:`fraudlab.scoring.add_duplicate_claims`
    over the same rows. The result
    is hash-partitioned by ``customer`` (``partitions`` of them, default the
    shuffle partitions): the three windows share that one shuffle.
    """
    batch_rows = (
        parsed.withColumn("_row_count", F.lit(1).cast("long"))
        .withColumn("_amount_total", F.col("amount"))
        .withColumn("_in_batch", F.lit(True))
    )
    stored_rows = stored.select(
        "customer",
        "step",
        "transaction_id",
        "merchant",
        "amount",
        F.col("row_count").alias("_row_count"),
        F.col("amount_total").alias("_amount_total"),
        F.lit(False).alias("_in_batch"),
    )
    union = batch_rows.unionByName(stored_rows, allowMissingColumns=True)
    by_customer = union.repartition(partitions, "customer") if partitions else union.repartition("customer")
    # Batch copies first, earliest offset first; summary rows (null id) are one per customer.
    copies = Window.partitionBy("customer", "transaction_id").orderBy(
        F.col("_in_batch").desc(), F.col("kafka_partition"), F.col("kafka_offset"))
    deduplicated = by_customer.withColumn("_copy", F.row_number().over(copies)).where(F.col("_copy") == 1)
    with_history = (
        features.add_history_from_totals(deduplicated, F.col("_row_count"), F.col("_amount_total"))
        # Summary rows only carry counts: they take no part in the duplicate rule.
        .where(F.col("transaction_id").isNotNull())
    )
    return (
        scoring.add_duplicate_claims(with_history, window_steps)
        .where(F.col("_in_batch"))
        .drop("_row_count", "_amount_total", "_in_batch", "_copy")
    )
