"""fraudlab.notebook.figures on small pandas tables: what each figure draws, read back from its artists."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from fraudlab.notebook import figures, live, summaries
from tests.notebooks import TABLE


def group_table(name, groups):
    return pd.DataFrame({name: groups, "rows": [10] * len(groups), "frauds": list(range(len(groups))),
                         "fraud_rate": [i / 10 for i in range(len(groups))]})


def test_fraud_rate_figure_draws_a_panel_per_table_and_a_bar_per_group():
    fig = figures.fraud_rate_figure({"age": group_table("age", ["1", "2", "3"]),
                                     "gender": group_table("gender", ["F", "M"])}, "by age and gender")
    assert isinstance(fig, Figure)
    assert [len(ax.patches) for ax in fig.axes] == [3, 2]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1", "2", "3"]
    assert fig.get_suptitle() == "by age and gender"


def test_label_distribution_figure_draws_both_classes_and_the_marker():
    binned = pd.DataFrame({"lower": [-math.inf, 0.5], "upper": [0.5, math.inf], "rows": [9, 3], "frauds": [1, 2],
                           "legit": [8, 1], "fraud_share": [1 / 3, 2 / 3], "legit_share": [8 / 9, 1 / 9]})
    fig = figures.label_distribution_figure(binned, "scores", "probability", domain=(0, 1), log_y=True, marker=0.7)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["legitimate (9)", "fraud (3)", "threshold 0.7"]
    assert ax.get_yscale() == "log"


def test_tradeoff_figures_mark_the_operating_point():
    tradeoff = summaries.alerts_per_day_vs_recall(TABLE, days=10)
    point = {"threshold": 0.5, "precision": 0.6, "recall": 0.75, "alerts_per_day": 0.5}
    for draw in (figures.precision_recall_figure, figures.alerts_vs_recall_figure):
        (ax,) = draw(tradeoff, point, "t").axes
        (dots,) = ax.collections
        (x, y), = dots.get_offsets()
        assert x == 0.75 and y == (0.6 if draw is figures.precision_recall_figure else 0.5)


def test_importance_figure_draws_the_top_features_heaviest_on_top():
    weights = pd.DataFrame({"feature": ["amount", "category_vec_es_travel", "age_vec_2"], "weight": [0.5, 0.3, 0.2]})
    (ax,) = figures.importance_figure(weights, "feature importance", "t", top_n=2).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["amount", "category_vec_es_travel"]


def test_drift_figure_colours_each_feature_by_its_status():
    drift = pd.DataFrame({"feature": ["a", "b"], "psi": [0.3, 0.01], "status": ["significant", "stable"]})
    (ax,) = figures.drift_figure(drift, "t").axes
    assert [p.get_width() for p in ax.patches] == [0.3, 0.01]
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()


def test_empty_inputs_give_a_figure_that_says_so():
    empty_weights = pd.DataFrame(columns=["feature", "weight"])
    for fig in (figures.importance_figure(empty_weights, "none", "t"),
                figures.drift_figure(summaries.drift_table({}), "t"),
                figures.throughput_figure({"alerts": live.per_minute_throughput(pd.DataFrame({"t": []}), "t")}, "t")):
        (ax,) = fig.axes
        assert not ax.axison and ax.texts


def test_throughput_figure_draws_a_bar_per_minute():
    per_minute = pd.DataFrame({"minute": pd.date_range("2024-05-01 10:00", periods=4, freq="min", tz="UTC"),
                               "rows": [5, 0, 7, 1]})
    fig = figures.throughput_figure({"scored": per_minute, "alerts": per_minute.head(2)}, "throughput")
    assert [[p.get_height() for p in ax.patches] for ax in fig.axes] == [[5, 0, 7, 1], [5, 0]]

