"""The streaming DAG's check (``fraudlab.streaming.check``) on hand-made records: no Kafka, no Cassandra, no Spark.

The Kafka and Cassandra reads are replaced by the records they would return, so these tests pin the
verdict itself: what counts as sent, as flagged, as an alert of the run; records, not distinct keys; which
duplicate alerts fail the check and which a retry or the checkpoint explains. The same check against the
real services is in tests/airflow/test_streaming_dag.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from fraudlab.streaming import check

THRESHOLD = 0.8
DAY = dt.datetime(2024, 1, 2)


def tx(tx_id: str, customer: str = "C1") -> bytes:
    return json.dumps({"transaction_id": tx_id, "customer": customer, "amount": 1.0}).encode()


def alert(tx_id: str, score: float = 0.9) -> tuple[bytes, bytes]:
    return tx_id.encode(), json.dumps({"transaction_id": tx_id, "fraud_score": score}).encode()


def records(values) -> list[tuple]:
    """(partition, offset, key, value) records of partition 0 from (key, value) pairs."""
    return [(0, offset, key, value) for offset, (key, value) in enumerate(values)]


# --------------------------------------------------------------------------- what the run sent and alerted


def test_sent_transactions_counts_each_message_and_lists_what_is_not_a_transaction():
    sent, times, others = check.sent_transactions(records([
        (b"t1", tx("t1", "C1")), (b"t2", tx("t2", "C2")), (b"t1", tx("t1", "C1")),
        (b"x", b"not json"), (None, json.dumps({"transaction_id": "t3"}).encode()), (b"y", None),
    ]))
    assert sent == {"t1": "C1", "t2": "C2"}
    assert times == Counter({"t1": 2, "t2": 1}), "messages, not distinct ids"
    assert [(o["offset"], o["key"]) for o in others] == [(3, "x"), (4, None), (5, "y")]


def test_alert_counts_count_records_of_the_runs_ids_and_total_the_rest():
    counts, others = check.alert_counts(records([alert("t1"), alert("t2"), alert("t1"), alert("old"),
                                                 (None, b"{}")]), {"t1", "t2", "t3"})
    assert counts == Counter({"t1": 2, "t2": 1})
    assert others == 2


def test_flagged_is_a_stored_score_at_or_above_the_threshold():
    found = {"a": (DAY, 0.8), "b": (DAY, 0.79), "c": (DAY, None), "d": (DAY, 1.0)}
    assert check.flagged(found, THRESHOLD) == {"a", "d"}


# --------------------------------------------------------------------------- the alerts topic's verdict


def alerts_verdict(alerts: dict, flagged=("t1", "t2"), sent=("t1", "t2", "t3"), outside=0, tries=1):
    times = Counter(sent)
    return check.alerts_verdict(set(flagged), times, Counter(alerts), outside, tries)


def test_one_alert_per_flagged_transaction_passes():
    figures, failures = alerts_verdict({"t1": 1, "t2": 1})
    assert failures == []
    assert figures["alerts_on_topic"] == figures["flagged_on_topic"] == 2
    assert figures["alerts_missing_on_topic"] == figures["alerts_unflagged"] == []
    assert figures["alerts_duplicated"] == {} and figures["alerts_resent"] == 0


def test_a_flagged_transaction_without_alert_fails():
    figures, failures = alerts_verdict({"t1": 1})
    assert figures["alerts_missing_on_topic"] == ["t2"] and figures["flagged_on_topic"] == 1
    assert failures == ["the alerts topic holds alerts for 1 of the 2 flagged transactions; missing ids: t2"]


def test_an_alert_for_a_transaction_the_run_did_not_flag_fails():
    figures, failures = alerts_verdict({"t1": 1, "t2": 1, "t3": 1})
    assert figures["alerts_unflagged"] == ["t3"]
    assert failures == ["the alerts topic holds alerts for 1 transactions this run did not flag: t3"]


def test_a_duplicate_alert_of_a_plain_run_fails_and_is_reported():
    figures, failures = alerts_verdict({"t1": 3, "t2": 1})
    assert figures["alerts_on_topic"] == 4, "records, not distinct keys"
    assert figures["alerts_duplicated"] == {"t1": 3} and figures["alerts_resent"] == 2
    assert len(failures) == 1 and failures[0].startswith("the alerts topic holds 2 alerts beyond one per message")
    assert failures[0].endswith("duplicated ids: t1")


def test_duplicates_are_tolerated_when_the_classifier_was_retried():
    figures, failures = alerts_verdict({"t1": 2, "t2": 2}, tries=2)
    assert failures == []
    assert figures["alerts_duplicated"] == {"t1": 2, "t2": 2} and figures["classify_tries"] == 2


def test_a_transaction_sent_twice_may_be_alerted_twice():
    figures, failures = alerts_verdict({"t1": 2, "t2": 1}, sent=("t1", "t1", "t2", "t3"))
    assert failures == [] and figures["alerts_resent"] == 0
    assert figures["alerts_duplicated"] == {"t1": 2}, "still reported"


def test_duplicates_up_to_what_the_classifier_read_outside_the_range_are_explained():
    # The checkpoint catching up: an earlier run's unclassified messages of the same slice.
    assert alerts_verdict({"t1": 2, "t2": 2}, outside=2)[1] == []
    assert alerts_verdict({"t1": 2, "t2": 2}, outside=5)[1] == []
    assert len(alerts_verdict({"t1": 2, "t2": 2}, outside=1)[1]) == 1


# --------------------------------------------------------------------------- the whole check, services replaced


@pytest.fixture
def run_files(tmp_path):
    metrics, progress = tmp_path / "replay_metrics.json", tmp_path / "classify_progress.jsonl"
    metrics.write_text(json.dumps({"rows_sent": 3}))
    progress.write_text("".join(json.dumps({"batch_id": b, "input_rows": n}) + "\n" for b, n in ((0, 2), (1, 1))))
    return metrics, progress


def snapshots(topic="tx", alerts_topic="alerts"):
    return [{"topic": topic, "offsets": {}}, {"topic": topic, "offsets": {"0": 3}},
            {"topic": alerts_topic, "offsets": {"0": 5}}, {"topic": alerts_topic, "offsets": {"0": 7}}]


def test_run_facts_come_from_the_snapshots_the_replay_metrics_and_the_progress_file(run_files, tmp_path):
    metrics, progress = run_files
    facts = check.RunFacts.of(snapshots(), str(metrics), str(progress), 1)
    assert facts == check.RunFacts("tx", ({}, {"0": 3}), "alerts", ({"0": 5}, {"0": 7}), rows_sent=3,
                                   rows_classified=3, classify_tries=1)
    # The classifier did not run (marked successful): no progress file, no try number.
    skipped = check.RunFacts.of(snapshots(), str(metrics), str(tmp_path / "absent.jsonl"), None)
    assert (skipped.rows_classified, skipped.classify_tries) == (0, 0)


def test_snapshots_of_a_range_on_two_topics_fail_the_check(run_files):
    mixed = snapshots()
    mixed[1] = {"topic": "other", "offsets": {}}
    with pytest.raises(check.CheckFailed, match="different topics"):
        check.RunFacts.of(mixed, *map(str, run_files), 1)


@pytest.fixture
def services(monkeypatch):
    """Kafka and Cassandra as the records they hold: ``topics`` by name, ``scored`` {id: score}, ``alerted``."""
    state = {"topics": {}, "scored": {}, "alerted": set(), "reads": []}

    def read_range(bootstrap, topic, start, end, client_id):
        state["reads"].append((topic, start, end))
        return records(state["topics"].get(topic, []))

    def read_scored_and_alerts(hosts, port, keyspace, sent):
        found = {t: (DAY, score) for t, score in state["scored"].items() if t in sent}
        return found, state["alerted"] & set(sent)

    monkeypatch.setattr(check.kafka, "read_range", read_range)
    monkeypatch.setattr(check.cassandra, "read_scored_and_alerts", read_scored_and_alerts)
    return state


def facts(rows_sent=3, rows_classified=3, tries=1):
    return check.RunFacts("tx", ({}, {"0": 3}), "alerts", ({"0": 5}, {"0": 7}), rows_sent, rows_classified, tries)


def run_check(services, alerts, scored=None, alerted=("t1",), **kwargs):
    services["topics"] = {"tx": [(t.encode(), tx(t)) for t in ("t1", "t2", "t3")], "alerts": alerts}
    services["scored"] = {"t1": 0.95, "t2": 0.1, "t3": 0.2} if scored is None else scored
    services["alerted"] = set(alerted)
    return check.check_run(("kafka:9092", ["cassandra"], 9042), "ks", facts(**kwargs), THRESHOLD, "test")


def test_a_run_whose_outputs_are_complete_passes(services):
    result = run_check(services, [alert("t1"), alert("someone-else")])
    assert services["reads"] == [("tx", {}, {"0": 3}), ("alerts", {"0": 5}, {"0": 7})]
    assert result["passed"] is True and result["failures"] == []
    assert (result["transactions_sent"], result["in_scored_transactions"], result["alerts_expected"],
            result["in_alerts_by_day"]) == (3, 3, 1, 1)
    assert (result["alert_messages_in_range"], result["alerts_on_topic"], result["flagged_on_topic"],
            result["alerts_of_other_transactions"]) == (2, 1, 1, 1)
    assert result["alerts_topic"] == "alerts" and result["alerts_offsets_after"] == {"0": 7}


def test_cassandra_failures_come_first_then_the_alerts_topic(services):
    result = run_check(services, [alert("t2")], scored={"t1": 0.95, "t2": 0.1}, alerted=())
    assert result["passed"] is False
    assert [f.split(" ")[0:3] for f in result["failures"]] == [
        ["Cassandra", "holds", "2"], ["alerts_by_day", "holds", "0"], ["the", "alerts", "topic"],
        ["the", "alerts", "topic"]]
    assert result["missing"] == ["t3"] and result["alerts_missing_on_topic"] == ["t1"]
    assert result["alerts_unflagged"] == ["t2"]


def test_the_checkpoint_catching_up_explains_a_second_alert(services):
    # The classifier read 3 more messages than the range holds (an earlier run's slice): t1 alerted twice.
    assert run_check(services, [alert("t1"), alert("t1")], rows_classified=6)["passed"] is True
    assert run_check(services, [alert("t1"), alert("t1")], rows_classified=3)["passed"] is False


def test_run_writes_the_report_and_raises_with_the_failures(services, tmp_path):
    services["topics"] = {"tx": [(b"t1", tx("t1"))], "alerts": [alert("t1"), alert("t1")]}
    services["scored"], services["alerted"] = {"t1": 0.95}, {"t1"}
    report = tmp_path / "run" / "check_outputs.json"
    with pytest.raises(check.CheckFailed, match=r"beyond one per message .* \(report: .*check_outputs.json\)"):
        check.run(("k", ["c"], 9042), "ks", facts(rows_sent=1, rows_classified=1), THRESHOLD, str(report), "test")
    saved = json.loads(report.read_text())
    assert saved["passed"] is False and saved["alerts_duplicated"] == {"t1": 2}

    summary = check.run(("k", ["c"], 9042), "ks", facts(1, 1, tries=2), THRESHOLD, str(report), "test")
    assert summary["passed"] is True and summary["alerts_on_topic"] == 2 and summary["classify_tries"] == 2
    assert not set(check.DETAIL_FIELDS) & set(summary), "the id lists stay in the report"
    assert json.loads(report.read_text())["alerts_duplicated"] == {"t1": 2}
