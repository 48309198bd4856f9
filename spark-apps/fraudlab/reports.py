"""Aggregations of scored claims for the monthly report (and the scoring summary).

Pure DataFrame functions over rows shaped like :data:`fraudlab.schemas.SCORED_SCHEMA`,
plus :func:`chart_png`, which draws already collected tables. Labels (``fraud``)
may be missing: figures that need them count only labelled rows and are null
when there are none. *Alert precision* is ``flagged and fraud / flagged`` over
labelled flagged claims.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fraudlab.scoring import SIGNALS

#: Merchants listed in the high-risk table unless told otherwise.
DEFAULT_TOP_MERCHANTS = 20


def _is_labelled() -> Column:
    return F.col("fraud").isNotNull()


def _is_fraud() -> Column:
    return F.coalesce(F.col("fraud") == 1, F.lit(False))


def _is_flagged() -> Column:
    return F.coalesce(F.col("flagged"), F.lit(False))



def _share(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a double, null when the denominator is 0."""
    return F.try_divide(numerator.cast("double"), F.nullif(denominator, F.lit(0)).cast("double"))


def _amount(condition: Column | None = None) -> Column:
    amount = F.col("amount") if condition is None else F.when(condition, F.col("amount"))
    return F.round(F.coalesce(F.sum(amount), F.lit(0.0)), 2)


def month_claims(scored: DataFrame, month: str) -> DataFrame:
    """The scored claims of one ``event_month`` (``YYYY-MM``)."""
    return scored.where(F.col("event_month") == F.lit(month))


def summary(scored: DataFrame) -> DataFrame:
    """One row of volumes, amounts, tiers, signal counts and alert precision.

    Columns: ``claims``, ``total_amount``, ``flagged``, ``flagged_amount``,
    ``high_risk``, ``medium_risk``, ``low_risk``, ``duplicates``, one
    ``<signal>`` count per signal in :data:`fraudlab.scoring.SIGNALS`,
    ``labelled``, ``frauds``, ``flagged_labelled``, ``flagged_frauds``,
    ``alert_precision`` and ``fraud_recall`` (flagged frauds / frauds). An
    empty input gives one row of zeros (and null ratios).
    """
    counts = scored.agg(
        F.count(F.lit(1)).alias("claims"),
        _amount().alias("total_amount"),
        F.count_if(_is_flagged()).alias("flagged"),
        _amount(_is_flagged()).alias("flagged_amount"),
        F.count_if(F.col("risk_tier") == "high").alias("high_risk"),
        F.count_if(F.col("risk_tier") == "medium").alias("medium_risk"),
        F.count_if(F.col("risk_tier") == "low").alias("low_risk"),
        F.count_if(F.col("duplicate_claim")).alias("duplicates"),
        *[F.count_if(F.array_contains(F.col("reasons"), signal)).alias(signal) for signal in SIGNALS],
        F.count_if(_is_labelled()).alias("labelled"),
        F.count_if(_is_fraud()).alias("frauds"),
        F.count_if(_is_flagged() & _is_labelled()).alias("flagged_labelled"),
        F.count_if(_is_flagged() & _is_fraud()).alias("flagged_frauds"),
    )
    return counts.select(
        "*",
        _share(F.col("flagged_frauds"), F.col("flagged_labelled")).alias("alert_precision"),
        _share(F.col("flagged_frauds"), F.col("frauds")).alias("fraud_recall"),
    )


def flagged_by_signal(scored: DataFrame) -> DataFrame:
    """Flagged claims per signal: one row for every signal of :data:`fraudlab.scoring.SIGNALS`, in that order.

    Columns: ``signal``, ``claims``, ``amount``, ``labelled``, ``frauds``,
    ``precision`` (frauds / labelled). A claim with several reasons counts once
    under each.
    """
    per_signal = []
    for signal in SIGNALS:
        fired = F.coalesce(F.array_contains(F.col("reasons"), signal), F.lit(False))
        per_signal.append(
            F.struct(
                F.lit(signal).alias("signal"),
                F.count_if(fired).alias("claims"),
                _amount(fired).alias("amount"),
                F.count_if(fired & _is_labelled()).alias("labelled"),
                F.count_if(fired & _is_fraud()).alias("frauds"),
            )
        )
    return (
        scored.agg(F.array(*per_signal).alias("signals"))
        .select(F.inline("signals"))
        .withColumn("precision", _share(F.col("frauds"), F.col("labelled")))
    )


def high_risk_merchants(scored: DataFrame, top_n: int | None = DEFAULT_TOP_MERCHANTS) -> DataFrame:
    """Merchants with flagged claims, most high-risk claims first (then most flagged, then amount).

    Columns: ``merchant``, ``category``, ``claims``, ``flagged``, ``high_risk``,
    ``flagged_share``, ``flagged_amount``, ``mean_fraud_score``, ``frauds``,
    ``alert_precision``. At most ``top_n`` rows (all when ``None``).
    """
    merchants = (
        scored.groupBy("merchant", "category")
        .agg(
            F.count(F.lit(1)).alias("claims"),
            F.count_if(_is_flagged()).alias("flagged"),
            F.count_if(F.col("risk_tier") == "high").alias("high_risk"),
            _amount(_is_flagged()).alias("flagged_amount"),
            F.round(F.avg("fraud_score"), 4).alias("mean_fraud_score"),
            F.count_if(_is_fraud()).alias("frauds"),
            F.count_if(_is_flagged() & _is_labelled()).alias("_flagged_labelled"),
            F.count_if(_is_flagged() & _is_fraud()).alias("_flagged_frauds"),
        )
        .where(F.col("flagged") > 0)
        .select(
            "merchant", "category", "claims", "flagged", "high_risk",
            F.round(_share(F.col("flagged"), F.col("claims")), 4).alias("flagged_share"),
            "flagged_amount", "mean_fraud_score", "frauds",
            _share(F.col("_flagged_frauds"), F.col("_flagged_labelled")).alias("alert_precision"),
        )
        .orderBy(F.col("high_risk").desc(), F.col("flagged").desc(), F.col("flagged_amount").desc(),
                 F.col("merchant"))
    )
    return merchants if top_n is None else merchants.limit(top_n)


def duplicate_claims(scored: DataFrame) -> DataFrame:
    """The claims marked ``duplicate_claim``, each with the claim it repeats, by customer, merchant, step."""
    return (
        scored.where(F.coalesce(F.col("duplicate_claim"), F.lit(False)))
        .select("transaction_id", "duplicate_of", "step", "customer", "merchant", "category", "amount",
                "fraud_score", "risk_tier", "flagged", "fraud")
        .orderBy("customer", "merchant", "step", "transaction_id")
    )


def daily_volumes(scored: DataFrame) -> DataFrame:
    """Claims, flagged and high-risk claims, amounts and frauds per day (``event_date``), in date order."""
    return (
        scored.groupBy(F.to_date("event_time").alias("event_date"))
        .agg(
            F.count(F.lit(1)).alias("claims"),
            F.count_if(_is_flagged()).alias("flagged"),
            F.count_if(F.col("risk_tier") == "high").alias("high_risk"),
            _amount().alias("amount"),
            _amount(_is_flagged()).alias("flagged_amount"),
            F.count_if(_is_fraud()).alias("frauds"),
        )
        .orderBy("event_date")
    )


def to_csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A small collected table as CSV text with a header (nulls empty, lists joined by ``|``)."""

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return "|".join(str(v) for v in value)
        return value.isoformat() if hasattr(value, "isoformat") else value

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row[c]) for c in columns])
    return buffer.getvalue()


def chart_png(month: str, daily: Sequence[Mapping[str, Any]], by_signal: Sequence[Mapping[str, Any]]) -> bytes:
    """A two-panel PNG: claims and flagged claims per day, and flagged claims per signal.

    Takes collected rows of :func:`daily_volumes` and :func:`flagged_by_signal`;
    an empty month gives a chart that says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        if daily:
            positions = list(range(len(daily)))
            left.bar(positions, [row["claims"] for row in daily], color="#c8d6e5", label="claims")
            left.bar(positions, [row["flagged"] for row in daily], color="#ee5253", label="flagged")
            left.set_xticks(positions, [str(row["event_date"])[-2:] for row in daily], rotation=90, fontsize=7)
            left.set_xlabel(f"day of {month}")
            left.set_ylabel("claims")
            left.legend()
        else:
            left.text(0.5, 0.5, f"no scored claims in {month}", ha="center", va="center")
            left.set_axis_off()
        signals = [row["signal"] for row in by_signal]
        left.set_title(f"Claims per day, {month}")
        right.barh(signals, [row["claims"] for row in by_signal], color="#ff9f43")
        right.invert_yaxis()
        right.set_xlabel("flagged claims")
        right.set_title("Flagged claims by signal")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- what the apps write


def scoring_metrics(run: Mapping[str, Any], summary: Mapping[str, Any],
                    drift: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``_metrics.json`` of ``score_claims.py``: the ``run``'s values, the :func:`summary` row, the PSI per feature."""
    return {
        **run,
        "claims_processed": summary["claims"],
        **{key: summary[key] for key in ("flagged", "high_risk", "medium_risk", "low_risk", "duplicates")},
        "signals": {signal: summary[signal] for signal in SIGNALS},
        **{key: summary[key] for key in ("total_amount", "flagged_amount", "labelled", "frauds",
                                         "flagged_frauds", "alert_precision", "fraud_recall")},
        "drift": {name: round(d["psi"], 6) for name, d in drift.items()},
        "drift_status": {name: d["status"] for name, d in drift.items()},
    }


#: The files of a month's report folder, besides ``report.json``.
REPORT_FILE = "report.json"
CHART_FILE = "chart.png"
TABLE_FILES = {
    "flagged_by_signal": "flagged_by_signal.csv",
    "high_risk_merchants": "high_risk_merchants.csv",
    "duplicate_claims": "duplicate_claims.csv",
    "daily_volumes": "daily_volumes.csv",
}


def plain(row: Any) -> dict[str, Any]:
    """A collected Row as JSON-ready values (dates as ISO strings)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.asDict().items()}


@dataclass(frozen=True)
class MonthReport:
    """A month's report, collected: ``report.json``'s content, the tables' CSV text by file name, the chart."""

    report: dict[str, Any]
    tables: dict[str, str]
    chart: bytes

    @property
    def summary(self) -> dict[str, Any]:
        return self.report["summary"]


def month_report(claims: DataFrame, month: str, source: str, top_merchants: int) -> MonthReport:
    """Collect the month's report from its scored ``claims`` (:func:`month_claims`): a few small Spark jobs."""
    figures = plain(summary(claims).first())
    tables = {
        "flagged_by_signal": flagged_by_signal(claims),
        "high_risk_merchants": high_risk_merchants(claims, top_merchants),
        "duplicate_claims": duplicate_claims(claims),
        "daily_volumes": daily_volumes(claims),
    }
    collected = {name: (df.columns, df.collect()) for name, df in tables.items()}
    versions = sorted(r["model_version"] for r in claims.select("model_version").distinct().collect()
                      if r["model_version"] is not None)
    has_data = figures["claims"] > 0
    report = {
        "month": month,
        "input": source,
        "has_data": has_data,
        "model_versions": versions,
        "summary": figures,
        "flagged_by_signal": [plain(r) for r in collected["flagged_by_signal"][1]],
        "high_risk_merchants": [plain(r) for r in collected["high_risk_merchants"][1]],
        "duplicate_claims": {
            "count": len(collected["duplicate_claims"][1]),
            "amount": round(sum(r["amount"] for r in collected["duplicate_claims"][1]), 2),
        },
        "files": {"chart": CHART_FILE, "tables": TABLE_FILES},
    }
    if not has_data:
        report["message"] = f"no scored claims for {month} in {source}"
    chart = chart_png(month, [plain(r) for r in collected["daily_volumes"][1]],
                      [plain(r) for r in collected["flagged_by_signal"][1]])
    texts = {TABLE_FILES[name]: to_csv_text(columns, rows) for name, (columns, rows) in collected.items()}
    return MonthReport(report, texts, chart)
