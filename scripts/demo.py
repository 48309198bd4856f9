"""`make demo`: the batch lab end to end on local Spark, with embedded defaults.

Runs each app through the real ``spark-submit`` (as Airflow's local DAG does):
generate -> prepare -> fit -> score -> report, then prints a summary a person can
read at a glance. No Docker, no servers: MLflow's store is SQLite under data/.

    .venv/bin/python scripts/demo.py [--rows 594643] [--master local[*]] [--month 2024-06]
    .venv/bin/python scripts/demo.py --input bs140513_032310.csv    # the real Kaggle file instead
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "spark-apps"))

from fraudlab import config  # noqa: E402

log = logging.getLogger("demo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the batch lab end to end on local Spark.")
    parser.add_argument("--rows", type=int, default=594_643, help="rows to generate (BankSim size by default)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--input", default=None,
                        help="a BankSim CSV to use instead of generating one (e.g. the Kaggle file)")
    parser.add_argument("--month", default="2024-06", help="month of the report (YYYY-MM)")
    parser.add_argument("--data-dir", default=str(config.DATA_DIR))
    return parser.parse_args(argv)


def spark_submit(app: str, args: list[str], master: str) -> float:
    """Run one app with spark-submit; return its wall time, or exit with its log tail."""
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", master,
           str(REPO / "spark-apps" / app), *args]
    log.info("$ %s", " ".join(cmd))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        log.error("%s failed (exit %d) after %.0f s:\n%s", app, proc.returncode, elapsed, tail)
        raise SystemExit(proc.returncode)
    for line in (proc.stdout + proc.stderr).splitlines():
        if " INFO " in line and "py4j" not in line:
            log.info("  %s", line.split(" INFO ", 1)[1])
    log.info("%s done in %.1f s", app, elapsed)
    return elapsed


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    data = Path(args.data_dir)
    raw = Path(args.input).resolve() if args.input else data / "raw" / "transactions.csv"
    prepared = data / "prepared" / "transactions"
    quarantine = data / "prepared" / "quarantine"
    model_dir = data / "models" / "fraud_model"
    scored = data / "scored" / "claims"
    reports = data / "reports"
    tracking = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    (data / "mlflow").mkdir(parents=True, exist_ok=True)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if args.input:
        if not raw.exists():
            log.error("--input %s: no such file", raw)
            return 2
        log.info("using %s (no generation)", raw)
    else:
        timings["generate"] = spark_submit(
            "generate_transactions.py",
            ["--rows", str(args.rows), "--seed", str(args.seed), "--output", str(raw)], args.master)
    timings["prepare"] = spark_submit(
        "prepare_data.py",
        ["--input", str(raw), "--output", str(prepared), "--quarantine", str(quarantine)], args.master)
    timings["fit"] = spark_submit(
        "fit_model.py",
        ["--input", str(prepared), "--model-dir", str(model_dir), "--search", "fast",
         "--tracking-uri", tracking], args.master)
    timings["score"] = spark_submit(
        "score_claims.py",
        ["--input", str(prepared), "--format", "parquet", "--model", str(model_dir),
         "--tracking-uri", tracking, "--output", str(scored), "--output-format", "parquet"], args.master)
    timings["report"] = spark_submit(
        "monthly_report.py",
        ["--input", str(scored), "--month", args.month, "--output", str(reports)], args.master)
    total = time.perf_counter() - started

    print(summary(data, prepared, model_dir, scored, reports, args.month, timings, total))
    return 0


def summary(data: Path, prepared: Path, model_dir: Path, scored: Path, reports: Path,
            month: str, timings: dict[str, float], total: float) -> str:
    prep = read_json(prepared / "_metrics.json")
    fit = read_json(model_dir / "metrics.json")
    score = read_json(scored / "_metrics.json")
    report_dir = reports / f"month={month}"
    report = read_json(report_dir / "report.json")

    def fmt(value, spec=".3f"):
        return format(value, spec) if isinstance(value, (int, float)) else str(value)

    lines = [
        "",
        "=" * 64,
        " fraudlab demo: the batch pipeline on local Spark",
        "=" * 64,
        f" prepared      {fmt(prep.get('rows_out'), ',')} rows kept, "
        f"{fmt(prep.get('rows_quarantined'), ',')} quarantined of {fmt(prep.get('rows_in'), ',')}",
        f" model         {fit.get('model_type', '?')}: test average precision "
        f"{fmt(fit.get('test_average_precision'))}, ROC AUC {fmt(fit.get('test_roc_auc'))}",
        f"               at threshold {fmt(fit.get('threshold'))}: precision "
        f"{fmt(fit.get('test_precision'))}, recall {fmt(fit.get('test_recall'))}, F1 {fmt(fit.get('test_f1'))}",
        f" scored        {fmt(score.get('claims_processed'), ',')} claims: "
        f"{fmt(score.get('flagged'), ',')} flagged, {fmt(score.get('high_risk'), ',')} high risk, "
        f"{fmt(score.get('duplicates'), ',')} duplicates",
        f" report        {month}: {report_dir}",
        " timings (s)   " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + f"; total {total:.0f}",
        f" outputs       {data}",
        "=" * 64,
    ]
    month_figures = report.get("summary") if isinstance(report.get("summary"), dict) else {}
    if month_figures:
        lines.insert(-3, (
            f"               {fmt(month_figures.get('claims'), ',')} claims, "
            f"{fmt(month_figures.get('flagged'), ',')} flagged ({fmt(month_figures.get('high_risk'), ',')} high risk), "
            f"fraud recall {fmt(month_figures.get('fraud_recall'))}, alert precision "
            f"{fmt(month_figures.get('alert_precision'))}"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
