"""The validation gate: the test metrics a fitted model must reach before it is registered.

The rules are data: ``min_<metric>`` / ``max_<metric>`` on the ``test_<metric>`` figures of
``metrics.json``, from :class:`fraudlab.config.GateThresholds`, then a JSON file, then ``--gate`` flags.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudlab import config

#: Metrics a gate rule may name, as min_<name> or max_<name>.
GATE_METRICS = ("average_precision", "roc_auc", "precision", "recall", "f1")


def gate_thresholds(rules: list[str], gate_file: str | None) -> dict[str, float]:
    """The gate: config defaults, then the JSON file, then ``--gate`` flags. Raises ValueError on a bad rule."""
    thresholds = config.GateThresholds().as_dict()
    if gate_file:
        from_file = json.loads(Path(gate_file).read_text())
        if not isinstance(from_file, dict):
            raise ValueError(f"{gate_file} holds a JSON {type(from_file).__name__}, not an object of RULE: VALUE")
        for key, value in from_file.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{gate_file}: rule {key!r} has {value!r}, not a number")
            thresholds[key] = float(value)
    thresholds.update(config.parse_rule_values(rules, "gate rule", "RULE=VALUE"))
    for key in thresholds:
        kind, _, name = key.partition("_")
        if kind not in ("min", "max") or name not in GATE_METRICS:
            raise ValueError(f"unknown gate rule {key!r}: use min_/max_ with one of {', '.join(GATE_METRICS)}")
    return thresholds


@dataclass(frozen=True)
class GateCheck:
    """One rule of the validation gate and how the model fared."""

    rule: str
    metric: str
    value: float | None
    threshold: float
    passed: bool

    @property
    def margin(self) -> float | None:
        """How far the value is on the good side of the threshold (negative: failed by that much)."""
        if self.value is None:
            return None
        return self.value - self.threshold if self.rule.startswith("min_") else self.threshold - self.value

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "metric": self.metric, "value": self.value, "threshold": self.threshold,
                "passed": self.passed, "margin": self.margin}


def check_gate(metrics: dict[str, Any], thresholds: dict[str, float]) -> list[GateCheck]:
    """Judge test metrics against gate rules ``min_<name>`` / ``max_<name>`` on ``test_<name>``.

    ``{"min_average_precision": 0.8}`` requires ``metrics["test_average_precision"] >= 0.8``.
    A rule whose metric is missing fails.
    """
    checks = []
    for rule, threshold in sorted(thresholds.items()):
        kind, _, name = rule.partition("_")
        if kind not in ("min", "max") or not name:
            raise ValueError(f"gate rule {rule!r} must be min_<metric> or max_<metric>")
        metric = f"test_{name}"
        value = metrics.get(metric)
        value = None if value is None else float(value)
        if value is None or math.isnan(value):
            passed = False
        else:
            passed = value >= threshold if kind == "min" else value <= threshold
        checks.append(GateCheck(rule, metric, value, float(threshold), passed))
    return checks
