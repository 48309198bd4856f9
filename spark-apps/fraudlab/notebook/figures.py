"""The notebooks' matplotlib figures: each ``*_figure`` function takes collected (pandas) tables.

Every figure is a :class:`matplotlib.figure.Figure` built without ``pyplot``,
so no global figure state leaks between cells and nothing is drawn twice;
Jupyter shows a Figure that ends a cell. The tables come from
:mod:`fraudlab.notebook.tables`, :mod:`fraudlab.notebook.summaries` and
:mod:`fraudlab.notebook.live`.

May touch: matplotlib and pandas frames it is given (and the PSI cut-offs of
:mod:`fraudlab.drift`). No Spark, no services, no files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fraudlab import drift as fdrift

_FRAUD_COLOUR = "#d62728"
_LEGIT_COLOUR = "#1f77b4"


def _figure(panels: int = 1, width: float = 7.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * panels if panels > 1 else width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    return fig, list(axes) if panels > 1 else [axes]


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def fraud_rate_figure(tables: Mapping[str, pd.DataFrame], title: str) -> Figure:
    """One horizontal bar panel per table: the fraud rate (%) of each group, in the table's order, top down.

    Each table's first column names the groups (e.g. :func:`.tables.fraud_rate_by`
    or :func:`.tables.binned_by_label` output collected); it needs ``rows``,
    ``frauds`` and ``fraud_rate``. Each bar is labelled ``frauds / rows``.
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

    ``binned`` is :func:`.tables.binned_by_label` output collected; the open end bins
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
    """Transactions per step as bars and frauds per step as a line (right axis).

    ``by_step`` is :func:`.tables.volume_by_step` output collected.
    """
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
    """The precision-recall curve of :func:`.summaries.alerts_per_day_vs_recall` rows, the model's threshold marked."""
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
    """The ``top_n`` heaviest features of :func:`.summaries.feature_weights` as horizontal bars, heaviest on top."""
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
    """PSI per feature (:func:`.summaries.drift_table` output) against the moderate and significant cut-offs."""
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
    """One bar panel per :func:`.live.per_minute_throughput` table: rows per minute (UTC)."""
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

