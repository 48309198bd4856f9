"""The validation gate: its rules from defaults, file and flags, and how a model fares against them."""

from __future__ import annotations

import pytest

from fraudlab.train.gate import check_gate, gate_thresholds


def test_gate_fails_each_metric_below_its_threshold_and_says_by_how_much():
    metrics = {"test_average_precision": 0.6, "test_roc_auc": 0.99, "test_recall": 0.4}
    checks = {c.rule: c for c in check_gate(
        metrics, {"min_average_precision": 0.7, "min_roc_auc": 0.95, "min_recall": 0.5, "min_f1": 0.1})}
    assert {rule for rule, c in checks.items() if not c.passed} == {"min_average_precision", "min_recall", "min_f1"}
    assert checks["min_average_precision"].margin == pytest.approx(-0.1)
    assert checks["min_roc_auc"].passed and checks["min_roc_auc"].margin == pytest.approx(0.04)
    assert checks["min_f1"].value is None  # a missing metric fails rather than passes


def test_fit_model_rejects_an_unknown_gate_rule():
    with pytest.raises(ValueError, match="unknown gate rule"):
        gate_thresholds(["min_accuracy=0.9"], None)
    assert gate_thresholds(["min_average_precision=0.85"], None)["min_average_precision"] == 0.85
