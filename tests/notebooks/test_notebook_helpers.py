"""fraudlab.notebook.helpers on a few inline rows, every expected figure worked out by hand.

The service reads run against the real Kafka and Cassandra (scratch keyspace and topic).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from fraudlab import features
from fraudlab.train import pipeline as train_pipeline
from fraudlab.notebook import helpers as nh
from fraudlab.schemas import PREPARED_SCHEMA

# --------------------------------------------------------------------------- inline data

LABELLED = T.StructType([
    T.StructField("transaction_id", T.StringType()),
    T.StructField("step", T.IntegerType()),
    T.StructField("customer", T.StringType()),
    T.StructField("merchant", T.StringType()),
    T.StructField("category", T.StringType()),
    T.StructField("amount", T.DoubleType()),
    T.StructField("fraud", T.IntegerType()),
])

ROWS = [
    # id, step, customer, merchant, category, amount, fraud
    ("t1", 0, "C1", "M1", "es_food", 5.0, 0),
    ("t2", 0, "C2", "M1", "es_food", 50.0, 0),
    ("t3", 1, "C1", "M2", "es_travel", 500.0, 1),
    ("t4", 1, "C3", "M2", "es_travel", 50.0, 1),
    ("t5", 1, "C3", "M3", "es_health", 40.0, 0),
    ("t6", 2, "C2", "M3", "es_health", 60.0, None),  # live traffic: no label yet
]


@pytest.fixture(scope="module")
def transactions(spark):
    return spark.createDataFrame(ROWS, LABELLED)


def scored_rows(spark, rows):
    """(id, fraud, probability) rows as predict() returns them, with the columns worst_errors lists."""
    schema = "transaction_id string, step int, amount double, fraud int, fraud_probability double"
    return spark.createDataFrame([(tid, 1, 10.0, fraud, p) for tid, fraud, p in rows], schema)


# --------------------------------------------------------------------------- Spark transforms


@pytest.mark.spark
def test_sample_customers_keeps_every_row_of_each_kept_customer(spark):
    rows = [(f"C{c}", step) for c in range(60) for step in range(3)]
    df = spark.createDataFrame(rows, "customer string, step int")
    sample = nh.sample_customers(df, 0.5, seed=3).toPandas()
    kept = sample.groupby("customer").size()
    assert 10 < len(kept) < 50
    assert set(kept) == {3}
    again = nh.sample_customers(df, 0.5, seed=3).toPandas()
    assert sorted(map(tuple, again.values)) == sorted(map(tuple, sample.values))


@pytest.mark.spark
def test_sample_customers_with_share_one_is_the_input(transactions):
    assert nh.sample_customers(transactions, 1.0) is transactions


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_sample_customers_rejects_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match="share"):
        nh.sample_customers(None, share)


@pytest.mark.spark
def test_overview_counts_rows_frauds_and_distinct_values(transactions):
    row = nh.overview(transactions).first().asDict()
    assert row == {"rows": 6, "frauds": 2, "fraud_rate": pytest.approx(2 / 5), "customers": 3, "merchants": 3,
                   "categories": 3, "first_step": 0, "last_step": 2}


@pytest.mark.spark
def test_fraud_rate_by_orders_by_rate_then_volume_and_ignores_unlabelled_rows_in_the_rate(spark, transactions):
    expected = spark.createDataFrame(
        [("es_travel", 2, 2, 1.0), ("es_food", 2, 0, 0.0), ("es_health", 2, 0, 0.0)],
        "category string, rows long, frauds long, fraud_rate double")
    assertDataFrameEqual(nh.fraud_rate_by(transactions, "category"), expected, checkRowOrder=True)


@pytest.mark.spark
def test_volume_by_step_counts_each_day(spark, transactions):
    expected = spark.createDataFrame(
        [(0, 2, 0, 0.0, 55.0), (1, 3, 2, 2 / 3, 590.0), (2, 1, 0, None, 60.0)],
        "step int, rows long, frauds long, fraud_rate double, amount double")
    assertDataFrameEqual(nh.volume_by_step(transactions), expected, checkRowOrder=True)


@pytest.mark.spark
def test_binned_by_label_lists_every_bin_with_rates_and_class_shares(spark, transactions):
    out = nh.binned_by_label(transactions, "amount", [10, 100, 1000, 5000]).toPandas()
    assert list(out["range"]) == ["< 10", "10-100", "100-1000", "1000-5000", ">= 5000"]
    assert list(out["rows"]) == [1, 3, 1, 0, 0]  # t6 has no label
    assert list(out["frauds"]) == [0, 1, 1, 0, 0]
    assert list(out["fraud_rate"][:3]) == pytest.approx([0.0, 1 / 3, 1.0])
    assert out["fraud_rate"][3:].isna().all()  # an empty bin has no rate
    assert list(out["fraud_share"]) == pytest.approx([0.0, 0.5, 0.5, 0.0, 0.0])
    assert list(out["legit_share"]) == pytest.approx([1 / 3, 2 / 3, 0.0, 0.0, 0.0])
    assert out["lower"][0] == -math.inf and out["upper"].iloc[-1] == math.inf
    assert list(out["lower"][1:]) == [10, 100, 1000, 5000]


def test_bin_labels_name_the_open_ends():
    assert nh.bin_labels([1, 2.5, 10]) == ["< 1", "1-2.5", "2.5-10", ">= 10"]


def test_log_edges_are_geometric_and_end_on_the_bounds():
    assert nh.log_edges(1, 1000, 3) == pytest.approx([1, 10, 100, 1000])


def test_probability_edges_cut_0_1_into_equal_bins():
    assert nh.probability_edges(4) == [0.25, 0.5, 0.75]


@pytest.mark.spark
def test_quantiles_by_label_gives_one_row_per_label(spark):
    df = spark.createDataFrame([(float(a), 0) for a in range(1, 6)] + [(100.0, 1)], "amount double, fraud int")
    out = nh.quantiles_by_label(df, "amount", [0.5, 1.0]).toPandas()
    assert out.to_dict("records") == [{"fraud": 0, "rows": 5, "p50": 3.0, "p100": 5.0},
                                      {"fraud": 1, "rows": 1, "p50": 100.0, "p100": 100.0}]


@pytest.mark.spark
def test_worst_false_positives_are_the_surest_flagged_legitimate_rows(spark):
    scored = scored_rows(spark, [("a", 0, 0.95), ("b", 0, 0.99), ("c", 1, 0.99), ("d", 0, 0.6), ("e", 0, 0.4),
                                 ("f", 0, 0.95)])
    out = nh.worst_errors(scored, 0.5, "false_positive", n=3).toPandas()
    assert list(out["transaction_id"]) == ["b", "a", "f"]  # ties by id
    assert list(out.columns) == ["transaction_id", "step", "amount", "fraud", "fraud_probability"]


@pytest.mark.spark
def test_worst_false_negatives_are_the_surest_missed_frauds(spark):
    scored = scored_rows(spark, [("a", 1, 0.3), ("b", 1, 0.01), ("c", 0, 0.001), ("d", 1, 0.5), ("e", 1, 0.2)])
    out = nh.worst_errors(scored, 0.5, "false_negative", n=10).toPandas()
    assert list(out["transaction_id"]) == ["b", "e", "a"]  # d is flagged: p >= threshold


def test_worst_errors_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        nh.worst_errors(SimpleNamespace(columns=[]), 0.5, "true_positive")


# --------------------------------------------------------------------------- summaries


TABLE = [  # threshold_table rows: threshold falling, recall rising
    {"threshold": 0.9, "precision": 1.0, "recall": 0.25, "f1": 0.4, "flagged": 1, "true_positives": 1},
    {"threshold": 0.5, "precision": 0.6, "recall": 0.75, "f1": 0.67, "flagged": 5, "true_positives": 3},
    {"threshold": 0.4, "precision": 0.5, "recall": 0.75, "f1": 0.6, "flagged": 6, "true_positives": 3},
    {"threshold": 0.1, "precision": 0.2, "recall": 1.0, "f1": 0.33, "flagged": 20, "true_positives": 4},
]


def test_alerts_per_day_vs_recall_spreads_the_flagged_rows_over_the_days():
    out = nh.alerts_per_day_vs_recall(TABLE, days=10)
    assert list(out.columns) == ["threshold", "recall", "precision", "flagged", "alerts_per_day"]
    assert list(out["alerts_per_day"]) == pytest.approx([0.1, 0.5, 0.6, 2.0])
    assert list(out["recall"]) == [0.25, 0.75, 0.75, 1.0]


@pytest.mark.parametrize("days", [0, -1])
def test_alerts_per_day_needs_days(days):
    with pytest.raises(ValueError, match="days"):
        nh.alerts_per_day_vs_recall(TABLE, days)


def test_operating_point_adds_alerts_per_day_to_the_confusion_figures():
    confusion = {"threshold": 0.5, "precision": 0.75, "recall": 0.6, "f1": 0.67, "tp": 3, "fp": 1, "fn": 2, "tn": 94}
    assert nh.operating_point(confusion, 4) == {**confusion, "alerts_per_day": 1.0}


def test_recall_levels_take_the_highest_threshold_reaching_each_level_and_skip_unreachable_ones():
    tradeoff = nh.alerts_per_day_vs_recall(TABLE[:3], days=10)  # never reaches recall 1.0
    out = nh.recall_levels(tradeoff, [0.5, 0.75, 1.0])
    assert out.to_dict("records") == [
        {"recall_at_least": 0.5, "threshold": 0.5, "recall": 0.75, "precision": 0.6, "alerts_per_day": 0.5},
        {"recall_at_least": 0.75, "threshold": 0.5, "recall": 0.75, "precision": 0.6, "alerts_per_day": 0.5},
    ]


def test_drift_table_lists_the_largest_psi_first_with_its_status():
    metrics = {"drift": {"amount": 0.02, "customer_prior_count": 0.3, "amount_zscore": 0.12},
               "drift_status": {"amount": "stable", "customer_prior_count": "significant"}}
    out = nh.drift_table(metrics)
    assert out.to_dict("records") == [
        {"feature": "customer_prior_count", "psi": 0.3, "status": "significant"},
        {"feature": "amount_zscore", "psi": 0.12, "status": "moderate"},  # status missing: from the PSI
        {"feature": "amount", "psi": 0.02, "status": "stable"},
    ]


def test_drift_table_of_a_run_without_drift_is_empty():
    assert nh.drift_table({"claims_processed": 3}).empty


def record(partition, offset, timestamp_ms, key, value):
    return SimpleNamespace(partition=partition, offset=offset, timestamp=timestamp_ms, key=key, value=value)


def test_decode_records_spreads_json_objects_into_columns_newest_first():
    out = nh.decode_records([
        record(0, 7, 1_700_000_000_000, b"t1", json.dumps({"transaction_id": "t1", "fraud_score": 0.9}).encode()),
        record(1, 3, 1_700_000_060_000, b"t2", b"not json"),
    ])
    assert list(out.columns) == ["kafka_partition", "kafka_offset", "kafka_timestamp", "key", "transaction_id",
                                 "fraud_score", "value"]  # fields in the order the messages hold them
    assert list(out["key"]) == ["t2", "t1"]
    assert out["value"][0] == "not json" and pd.isna(out["fraud_score"][0])
    assert out["fraud_score"][1] == 0.9
    assert out["kafka_timestamp"][1] == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")


def test_decode_records_of_nothing_is_an_empty_table():
    out = nh.decode_records([])
    assert out.empty and "kafka_timestamp" in out.columns


def test_per_minute_throughput_counts_rows_per_minute_and_lists_empty_minutes():
    times = [dt.datetime(2024, 5, 1, 10, 0, 5), dt.datetime(2024, 5, 1, 10, 0, 50), dt.datetime(2024, 5, 1, 10, 2, 10)]
    out = nh.per_minute_throughput(pd.DataFrame({"scored_at": times}), "scored_at")
    assert list(out["rows"]) == [2, 0, 1]
    assert list(out["minute"]) == [pd.Timestamp(f"2024-05-01 10:0{m}", tz="UTC") for m in range(3)]


def test_per_minute_throughput_of_no_rows_is_empty():
    out = nh.per_minute_throughput(pd.DataFrame({"scored_at": []}), "scored_at")
    assert out.empty and list(out.columns) == ["minute", "rows"]


# --------------------------------------------------------------------------- feature weights


def prepared(spark, rows):
    start = dt.datetime(2024, 1, 1)
    return spark.createDataFrame(
        [(f"t{i}", step, customer, "2", "F", "28007", merchant, "28007", category, amount, fraud,
          start + dt.timedelta(days=step), "2024-01") for i, (step, customer, merchant, category, amount, fraud)
         in enumerate(rows)], PREPARED_SCHEMA)


def training_rows():
    rows = []
    for c in range(6):
        for step in range(6):
            rows.append((step, f"C{c}", "M85975013", "es_food", 10.0 + 3 * c + step, 0))
        rows.append((6, f"C{c}", "M480139044", "es_health", 400.0 + 50 * c, int(c % 2 == 0)))
    return rows


@pytest.mark.spark
def test_feature_weights_of_a_logistic_regression_are_coefficients_times_feature_spread(spark):
    from pyspark.ml.classification import LogisticRegression

    data = features.model_input(prepared(spark, training_rows())).cache()
    fitted = train_pipeline.build_pipeline(LogisticRegression(maxIter=20), features.category_stats(data)).fit(
        train_pipeline.add_class_weight(data))
    weights, kind = nh.feature_weights(fitted, data)
    assert kind == "|coefficient| x feature std"
    names = train_pipeline.feature_names(fitted, data)
    assert sorted(weights["feature"]) == sorted(names)
    assert list(weights["weight"]) == sorted(weights["weight"], reverse=True)
    by_name = dict(zip(weights["feature"], weights["weight"]))
    assert by_name["gender_vec_F"] == 0.0  # one gender only: the feature never varies
    amount_std = data.toPandas()["amount"].std()
    coefficient = fitted.stages[-1].coefficients[names.index("amount")]
    assert by_name["amount"] == pytest.approx(abs(coefficient) * amount_std)


@pytest.mark.spark
def test_feature_weights_of_a_tree_model_are_its_importances(spark):
    from pyspark.ml.classification import GBTClassifier

    data = features.model_input(prepared(spark, training_rows())).cache()
    fitted = train_pipeline.build_pipeline(GBTClassifier(maxIter=3, maxDepth=2, seed=1), features.category_stats(data)).fit(
        train_pipeline.add_class_weight(data))
    weights, kind = nh.feature_weights(fitted, data)
    assert kind == "feature importance"
    assert dict(zip(weights["feature"], weights["weight"])) == train_pipeline.feature_importances(fitted, data)


# --------------------------------------------------------------------------- figures


def group_table(name, groups):
    return pd.DataFrame({name: groups, "rows": [10] * len(groups), "frauds": list(range(len(groups))),
                         "fraud_rate": [i / 10 for i in range(len(groups))]})


def test_fraud_rate_figure_draws_a_panel_per_table_and_a_bar_per_group():
    fig = nh.fraud_rate_figure({"age": group_table("age", ["1", "2", "3"]), "gender": group_table("gender", ["F", "M"])},
                               "by age and gender")
    assert isinstance(fig, Figure)
    assert [len(ax.patches) for ax in fig.axes] == [3, 2]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1", "2", "3"]
    assert fig.get_suptitle() == "by age and gender"


def test_label_distribution_figure_draws_both_classes_and_the_marker():
    binned = pd.DataFrame({"lower": [-math.inf, 0.5], "upper": [0.5, math.inf], "rows": [9, 3], "frauds": [1, 2],
                           "legit": [8, 1], "fraud_share": [1 / 3, 2 / 3], "legit_share": [8 / 9, 1 / 9]})
    fig = nh.label_distribution_figure(binned, "scores", "probability", domain=(0, 1), log_y=True, marker=0.7)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["legitimate (9)", "fraud (3)", "threshold 0.7"]
    assert ax.get_yscale() == "log"


def test_tradeoff_figures_mark_the_operating_point():
    tradeoff = nh.alerts_per_day_vs_recall(TABLE, days=10)
    point = {"threshold": 0.5, "precision": 0.6, "recall": 0.75, "alerts_per_day": 0.5}
    for draw in (nh.precision_recall_figure, nh.alerts_vs_recall_figure):
        (ax,) = draw(tradeoff, point, "t").axes
        (dots,) = ax.collections
        (x, y), = dots.get_offsets()
        assert x == 0.75 and y == (0.6 if draw is nh.precision_recall_figure else 0.5)


def test_importance_figure_draws_the_top_features_heaviest_on_top():
    weights = pd.DataFrame({"feature": ["amount", "category_vec_es_travel", "age_vec_2"], "weight": [0.5, 0.3, 0.2]})
    (ax,) = nh.importance_figure(weights, "feature importance", "t", top_n=2).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["amount", "category_vec_es_travel"]


def test_drift_figure_colours_each_feature_by_its_status():
    drift = pd.DataFrame({"feature": ["a", "b"], "psi": [0.3, 0.01], "status": ["significant", "stable"]})
    (ax,) = nh.drift_figure(drift, "t").axes
    assert [p.get_width() for p in ax.patches] == [0.3, 0.01]
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()


def test_empty_inputs_give_a_figure_that_says_so():
    empty_weights = pd.DataFrame(columns=["feature", "weight"])
    for fig in (nh.importance_figure(empty_weights, "none", "t"),
                nh.drift_figure(nh.drift_table({}), "t"),
                nh.throughput_figure({"alerts": nh.per_minute_throughput(pd.DataFrame({"t": []}), "t")}, "t")):
        (ax,) = fig.axes
        assert not ax.axison and ax.texts


def test_throughput_figure_draws_a_bar_per_minute():
    per_minute = pd.DataFrame({"minute": pd.date_range("2024-05-01 10:00", periods=4, freq="min", tz="UTC"),
                               "rows": [5, 0, 7, 1]})
    fig = nh.throughput_figure({"scored": per_minute, "alerts": per_minute.head(2)}, "throughput")
    assert [[p.get_height() for p in ax.patches] for ax in fig.axes] == [[5, 0, 7, 1], [5, 0]]


# --------------------------------------------------------------------------- service reads (real Kafka and Cassandra)


@pytest.fixture
def scratch_keyspace(cassandra_service):
    from services import runner

    keyspace = f"nbhelpers_{uuid.uuid4().hex[:10]}"
    runner.create_keyspace(keyspace)
    yield keyspace
    runner.drop_keyspace(keyspace)


@pytest.mark.slow
def test_latest_alerts_reads_the_newest_days_first_and_stops_at_n(cassandra_service, scratch_keyspace):
    session = nh.connect_cassandra([cassandra_service.host], cassandra_service.port, scratch_keyspace)
    try:
        insert = session.prepare("INSERT INTO alerts_by_day (alert_date, event_time, transaction_id, amount, reasons) "
                                 "VALUES (?, ?, ?, ?, ?)")
        for day, hour, tid in [(1, 9, "a"), (1, 10, "b"), (2, 8, "c"), (2, 12, "d"), (3, 7, "e")]:
            when = dt.datetime(2024, 3, day, hour)
            session.execute(insert, (when.date(), when, tid, 10.0 * day, ["model_score"]))
        latest = nh.latest_alerts(session, n=4)
        nothing = nh.read_cassandra_table(session, "alerts_by_day", ["transaction_id"], where="alert_date = %s",
                                          parameters=[dt.date(2024, 4, 1)])
    finally:
        session.cluster.shutdown()
    assert list(latest["transaction_id"]) == ["e", "d", "c", "b"]
    assert list(latest["alert_date"]) == [dt.date(2024, 3, 3), dt.date(2024, 3, 2), dt.date(2024, 3, 2),
                                          dt.date(2024, 3, 1)]
    assert latest["reasons"][0] == ["model_score"]
    assert list(latest.columns[:3]) == ["alert_date", "customer", "event_time"]  # the stream's column order
    assert nothing.empty and list(nothing.columns) == ["transaction_id"]


@pytest.mark.slow
def test_latest_alerts_of_an_empty_table_has_the_table_columns(cassandra_service, scratch_keyspace):
    session = nh.connect_cassandra([cassandra_service.host], cassandra_service.port, scratch_keyspace)
    try:
        out = nh.latest_alerts(session, n=5)
    finally:
        session.cluster.shutdown()
    assert out.empty and {"alert_date", "event_time", "transaction_id", "fraud_score"} <= set(out.columns)


@pytest.mark.slow
def test_read_topic_tail_reads_the_last_n_records_of_every_partition(kafka_service):
    from kafka import KafkaProducer

    from services import runner

    topic = f"nbhelpers_{uuid.uuid4().hex[:10]}"
    runner.create_topics({topic: 2})
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_service.bootstrap_servers, acks="all")
        for i in range(10):
            producer.send(topic, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode(), partition=i % 2)
        producer.flush()
        producer.close()
        out = nh.read_topic_tail(kafka_service.bootstrap_servers, topic, last_n=3, timeout_s=30)
    finally:
        runner.delete_topics([topic])
    assert sorted(out["i"]) == [4, 5, 6, 7, 8, 9]  # the last 3 of each partition
    assert sorted(zip(out["kafka_partition"], out["kafka_offset"])) == [(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]


@pytest.mark.slow
def test_read_topic_tail_of_a_missing_topic_says_so(kafka_service):
    with pytest.raises(ValueError, match="does not exist"):
        nh.read_topic_tail(kafka_service.bootstrap_servers, f"nbhelpers_missing_{uuid.uuid4().hex[:8]}", timeout_s=10)
