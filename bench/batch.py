"""Batch benchmark: fit_model's MLlib pipeline against scikit-learn on the same split and features.

Usage:
    .venv/bin/python bench/batch.py [--rows 594643] [--seed 140513] [--input PREPARED_PARQUET] \
        [--master local[2]] [--output bench/results/batch.json]

Generates BankSim-like rows (``fraudlab.data.generator``), computes the model input
once with Spark (customer history, log amount), splits by time as fit_model does
(test from the last 20 % of the steps), and then, for each side:

* Spark: every classifier of fit_model's ``--search fast`` grid in
  ``fraudlab.train.pipeline.build_pipeline`` (z-score stage, one-hot, assembler,
  classifier, balanced class weights), fitted on all training steps;
* scikit-learn, in one process: ``LogisticRegression`` (one-hot categoricals,
  scaled numerics) and ``HistGradientBoostingClassifier`` (native categoricals),
  each with the same class weights as the Spark candidates (strength 0.5 and 1.0,
  i.e. square-root and fully balanced, as ``sample_weight``), on the same columns
  including ``amount_zscore`` from the training category statistics.

Measured: fit wall time, scoring throughput of the fitted model step (Spark:
``PipelineModel.transform`` written to the ``noop`` sink from cached input;
scikit-learn: ``predict_proba`` of the pipeline; median of three runs), and the
test average precision, computed for both sides with scikit-learn's
``average_precision_score`` (MLlib's trapezoidal ``areaUnderPR`` is kept
alongside). The summary keys report each side's best model by test average
precision. Writes ``bench/results/batch.json`` and logs the ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("SPARK_CONF_DIR", str(BENCH_DIR.parent / "compose" / "spark"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from fraudlab import config  # noqa: E402
from fraudlab.data import banksim, generator  # noqa: E402
from fraudlab import features  # noqa: E402
from fraudlab.train import metrics as train_metrics  # noqa: E402
from fraudlab.train import pipeline as train_pipeline  # noqa: E402
from fraudlab.train import search as train_search  # noqa: E402
from fraudlab.train import split as train_split  # noqa: E402
from fraudlab.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES  # noqa: E402
from fraudlab.schemas import PREPARED_COLUMNS, PREPARED_SCHEMA  # noqa: E402
from fraudlab.session import build_spark  # noqa: E402

log = logging.getLogger("bench_batch")
SCORING_REPEATS = 3
#: scikit-learn gets the class-weight strengths fit_model's fast search tries (1.0 = "balanced").
CLASS_WEIGHT_STRENGTHS = (0.5, 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=None,
                        help="prepared Parquet data set to use instead of generating --rows rows")
    parser.add_argument("--rows", type=int, default=banksim.FULL_ROWS)
    parser.add_argument("--seed", type=int, default=generator.DEFAULT_SEED)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "batch.json"))
    return parser.parse_args(argv)


def prepared_frame(spark, rows: int, seed: int):
    """Generated rows as prepared Parquet would hold them (no CSV round trip: not what is measured)."""
    raw = generator.generate(rows, seed).rename(columns={"zipcodeOri": "zipcode_ori", "zipMerchant": "zip_merchant"})
    event_time = F.timestamp_add("DAY", F.col("step"), F.lit(config.DEFAULT_START_DATE).cast("timestamp"))
    return (
        spark.createDataFrame(raw)
        .withColumn("transaction_id", F.monotonically_increasing_id().cast("string"))
        .withColumn("event_time", event_time)
        .withColumn("event_month", F.date_format(event_time, "yyyy-MM"))
        .select(*[F.col(f.name).cast(f.dataType) for f in PREPARED_SCHEMA.fields])
    )


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def bench_spark(train, test, test_rows: int) -> list[dict]:
    from sklearn.metrics import average_precision_score

    stats = features.category_stats(train)
    results = []
    for candidate in train_search.search_candidates("fast"):
        weighted = train_pipeline.add_class_weight(train, strength=candidate.class_weight_strength).cache()
        weighted.count()
        pipeline = train_pipeline.build_pipeline(candidate.estimator, stats)
        fitted, fit_s = timed(lambda: pipeline.fit(weighted))
        weighted.unpersist()
        scored = train_pipeline.predict(fitted, test)
        score_times = [timed(lambda: scored.write.format("noop").mode("overwrite").save())[1]
                       for _ in range(SCORING_REPEATS)]
        probs = scored.select("transaction_id", "fraud", "fraud_probability").toPandas()
        results.append({
            "model": type(candidate.estimator).__name__,
            "class_weight_strength": candidate.class_weight_strength,
            "params": {k: v for k, v in train_pipeline.classifier_params(fitted.stages[-1]).items()
                       if k in ("regParam", "elasticNetParam", "maxIter", "maxDepth", "stepSize")},
            "fit_s": fit_s,
            "score_s": statistics.median(score_times),
            "score_rows_per_s": test_rows / statistics.median(score_times),
            "average_precision": float(average_precision_score(probs["fraud"], probs["fraud_probability"])),
            "mllib_area_under_pr": train_metrics.average_precision(scored),
        })
        log.info("spark %s: %s", results[-1]["model"], {k: results[-1][k] for k in (
            "class_weight_strength", "fit_s", "score_rows_per_s", "average_precision")})
    return results


def bench_sklearn(train_pdf: pd.DataFrame, test_pdf: pd.DataFrame, stats: dict) -> list[dict]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    def with_zscore(pdf: pd.DataFrame) -> pd.DataFrame:
        # the same statistics and rule as the pipeline's SQLTransformer stage
        mean = pdf["category"].map({c: m for c, (m, _) in stats.items()})
        std = pdf["category"].map({c: s for c, (_, s) in stats.items()}).replace(0.0, np.nan)
        out = pdf.copy()
        out["amount_zscore"] = ((pdf["amount"] - mean) / std).fillna(0.0)
        return out[[*CATEGORICAL_FEATURES, *NUMERIC_FEATURES]]

    x_train, y_train = with_zscore(train_pdf), train_pdf["fraud"].to_numpy()
    x_test, y_test = with_zscore(test_pdf), test_pdf["fraud"].to_numpy()
    def sample_weight(strength: float) -> np.ndarray:
        # fraudlab.train.pipeline.class_weight: frauds weigh ((1 - p) / p) ** strength, total weight = rows
        share = y_train.mean()
        ratio = ((1 - share) / share) ** strength
        legit = 1.0 / (share * ratio + 1 - share)
        return np.where(y_train == 1, legit * ratio, legit)

    models = {
        "LogisticRegression": lambda: make_pipeline(
            ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL_FEATURES),
                               ("num", StandardScaler(), NUMERIC_FEATURES)]),
            LogisticRegression(max_iter=1000),
        ),
        "HistGradientBoostingClassifier": lambda: make_pipeline(
            ColumnTransformer([("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                                      encoded_missing_value=-1), CATEGORICAL_FEATURES),
                               ("num", "passthrough", NUMERIC_FEATURES)]),
            HistGradientBoostingClassifier(categorical_features=list(range(len(CATEGORICAL_FEATURES))),
                                           random_state=0),
        ),
    }
    results = []
    for (name, make), strength in itertools.product(models.items(), CLASS_WEIGHT_STRENGTHS):
        pipeline = make()
        step = pipeline.steps[-1][0]
        weights = {f"{step}__sample_weight": sample_weight(strength)}
        _, fit_s = timed(lambda: pipeline.fit(x_train, y_train, **weights))
        score_times = []
        for _ in range(SCORING_REPEATS):
            probs, seconds = timed(lambda: pipeline.predict_proba(x_test)[:, 1])
            score_times.append(seconds)
        results.append({
            "model": name,
            "class_weight_strength": strength,
            "fit_s": fit_s,
            "score_s": statistics.median(score_times),
            "score_rows_per_s": len(x_test) / statistics.median(score_times),
            "average_precision": float(average_precision_score(y_test, probs)),
        })
        log.info("sklearn %s: %s", name, {k: results[-1][k] for k in (
            "class_weight_strength", "fit_s", "score_rows_per_s", "average_precision")})
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spark = build_spark("bench_batch", master=args.master, conf={"spark.driver.memory": "4g"})
    try:
        prepared = (spark.read.parquet(args.input).select(*PREPARED_COLUMNS) if args.input
                    else prepared_frame(spark, args.rows, args.seed))
        data = features.model_input(prepared).cache()
        split_step = train_split.default_split_step(*train_split.step_range(data))
        train, test = train_split.temporal_split(data, split_step)
        train, test = train.cache(), test.cache()
        train_rows, test_rows = train.count(), test.count()
        log.info("rows %d: train %d (steps < %d), test %d", train_rows + test_rows, train_rows, split_step, test_rows)

        spark_results = bench_spark(train, test, test_rows)
        columns = ["fraud", *CATEGORICAL_FEATURES, *[c for c in NUMERIC_FEATURES if c != "amount_zscore"]]
        stats = features.category_stats(train)
        sklearn_results = bench_sklearn(train.select(*columns).toPandas(), test.select(*columns).toPandas(), stats)
    finally:
        spark.stop()

    best_spark = max(spark_results, key=lambda r: r["average_precision"])
    best_sklearn = max(sklearn_results, key=lambda r: r["average_precision"])
    summary = {
        "input": args.input or f"generated: {args.rows} rows, seed {args.seed}",
        "rows": train_rows + test_rows, "train_rows": train_rows, "test_rows": test_rows, "test_from_step": split_step,
        "spark_model": best_spark["model"], "sklearn_model": best_sklearn["model"],
        "spark_fit_s": best_spark["fit_s"], "sklearn_fit_s": best_sklearn["fit_s"],
        "spark_score_rows_per_s": best_spark["score_rows_per_s"],
        "sklearn_score_rows_per_s": best_sklearn["score_rows_per_s"],
        "spark_average_precision": best_spark["average_precision"],
        "sklearn_average_precision": best_sklearn["average_precision"],
        "ratios": {
            "fit_time_spark_over_sklearn": best_spark["fit_s"] / best_sklearn["fit_s"],
            "score_throughput_spark_over_sklearn": best_spark["score_rows_per_s"] / best_sklearn["score_rows_per_s"],
            "average_precision_spark_minus_sklearn": (best_spark["average_precision"]
                                                      - best_sklearn["average_precision"]),
        },
        "spark": spark_results,
        "sklearn": sklearn_results,
        "environment": {"master": args.master, "cpus": os.cpu_count(), "python": platform.python_version(),
                        "machine": platform.machine()},
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    for key, value in summary["ratios"].items():
        log.info("%s: %.3f", key, value)
    log.info("spark %s: fit %.1f s, %.0f rows/s, AP %.4f | sklearn %s: fit %.1f s, %.0f rows/s, AP %.4f -> %s",
             best_spark["model"], best_spark["fit_s"], best_spark["score_rows_per_s"], best_spark["average_precision"],
             best_sklearn["model"], best_sklearn["fit_s"], best_sklearn["score_rows_per_s"],
             best_sklearn["average_precision"], output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
