"""One home for the lab's constants and defaults.

Per-run values (paths, dates, thresholds) are flags of the apps; their defaults
come from here. Ports, topic names, the keyspace and the model name are read by
the apps, the service runner, the DAGs and the consistency tests alike.
Credentials never live here: they come from the environment.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Repository root when running from a checkout; overridable for installed copies.
REPO_ROOT = Path(os.environ.get("FRAUDLAB_HOME", Path(__file__).resolve().parents[2]))
DATA_DIR = Path(os.environ.get("FRAUDLAB_DATA", REPO_ROOT / "data"))

# Default locations of the batch pipeline's data sets, all under data/ (git-ignored).
RAW_CSV = DATA_DIR / "raw" / "transactions.csv"
PREPARED_DIR = DATA_DIR / "prepared" / "transactions"
QUARANTINE_DIR = DATA_DIR / "prepared" / "quarantine"
MODEL_DIR = DATA_DIR / "models" / "fraud_model"
SCORED_DIR = DATA_DIR / "scored" / "claims"
REPORTS_DIR = DATA_DIR / "reports"

#: Step 0 of BankSim maps to this date; one step is one day.
DEFAULT_START_DATE = "2024-01-01"

# Service endpoints: the same ports in the compose stack and the Docker-free runner.
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
CASSANDRA_HOST = os.environ.get("CASSANDRA_HOST", "127.0.0.1")
CASSANDRA_PORT = int(os.environ.get("CASSANDRA_PORT", "9042"))
MLFLOW_TRACKING_URI = os.environ.get(
    "MLFLOW_TRACKING_URI", f"sqlite:///{DATA_DIR / 'mlflow' / 'mlflow.db'}"
)

TOPIC_TRANSACTIONS = "transactions"
TOPIC_ALERTS = "fraud_alerts"
TOPIC_DEAD_LETTER = "transactions_dlq"

CASSANDRA_KEYSPACE = "fraudlab"

MODEL_NAME = "fraudlab_fraud_classifier"
CHAMPION_ALIAS = "champion"

#: A report month, ``YYYY-MM``: the report app checks it, the DAGs' ``report_month`` params carry it.
MONTH_REGEX = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


def parse_rule_values(items: list[str], label: str = "rule", form: str = "RULE=VALUE") -> dict[str, float]:
    """``["name=0.5", ...]`` as ``{"name": 0.5}`` (later items win); ValueError on an item without ``=``.

    The one parser of the apps' repeatable ``RULE=VALUE`` flags (``--gate``, ``--rule-weight``);
    ``label`` and ``form`` word the error: "gate rule 'x' is not RULE=VALUE".
    """
    values: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{label} {item!r} is not {form}")
        values[name.strip()] = float(value)
    return values


@dataclass(frozen=True)
class GateThresholds:
    """Minimum test metrics a fitted model must reach before it is registered."""

    min_average_precision: float = 0.70
    min_roc_auc: float = 0.95
    min_recall: float = 0.50

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the rule signals and of the combined score."""

    zscore_threshold: float = 3.0
    duplicate_window_steps: int = 7
    #: A customer's amount this many times their earlier mean is a spike ...
    spike_ratio: float = 5.0
    #: ... once they have at least this many earlier transactions (a short history says little).
    spike_min_history: int = 5
    high_risk_threshold: float = 0.7
    alert_threshold: float = 0.8
    rule_weights: dict[str, float] = field(
        default_factory=lambda: {"amount_outlier": 0.15, "duplicate_claim": 0.10, "customer_amount_spike": 0.10}
    )

    def as_dict(self) -> dict:
        return asdict(self)
