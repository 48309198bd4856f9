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


def test_a_gate_file_sets_rules_and_gate_flags_override_it(tmp_path):
    gate_file = tmp_path / "gate.json"
    gate_file.write_text('{"min_average_precision": 0.8, "min_recall": 0.6}')
    thresholds = gate_thresholds(["min_recall=0.7"], str(gate_file))
    assert (thresholds["min_average_precision"], thresholds["min_recall"]) == (0.8, 0.7)
    assert thresholds["min_roc_auc"] == 0.95  # a default the file does not name


@pytest.mark.parametrize(("text", "words"), [("[0.8]", "JSON list"), ('{"min_recall": "high"}', "not a number"),
                                             ('{"min_recall": true}', "not a number")])
def test_a_gate_file_that_is_not_an_object_of_numbers_is_refused(tmp_path, text, words):
    gate_file = tmp_path / "gate.json"
    gate_file.write_text(text)
    with pytest.raises(ValueError, match=words):
        gate_thresholds([], str(gate_file))
