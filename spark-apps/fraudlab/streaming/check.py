"""The streaming DAG's verdict: does Cassandra hold every transaction the replay sent, and every alert, and does the
alerts topic hold one alert for each flagged transaction, and none for the others?

:func:`check_run` does it all: :func:`fraudlab.io.kafka.read_range` reads the run's messages,
:func:`sent_transactions` keeps the transactions, :func:`fraudlab.io.cassandra.read_scored_and_alerts`
looks them up, :func:`verdict` judges Cassandra; then the alerts the classifier sent during the run are read
back from the alerts topic, counted per transaction by :func:`alert_counts` and judged by :func:`alerts_verdict`.
:func:`run` is the body of the DAG's ``check_outputs`` task, given the :class:`RunFacts` of the run: it judges,
writes the report into the run folder (:func:`save`) and raises :class:`CheckFailed` on a failed check.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudlab.io import cassandra, kafka

#: The DAG's logger: the check's lines read "fraud_streaming: ..." in the task log.
log = logging.getLogger("fraud_streaming")
#: Ids named in a failure message (all of them go to check_outputs.json).
IDS_IN_MESSAGE = 10
#: The report's id lists and per-id counts: in check_outputs.json, not in the task's XCom.
DETAIL_FIELDS = ("missing", "alerts_missing", "not_transactions", "alerts_missing_on_topic", "alerts_unflagged",
                 "alerts_duplicated")


class CheckFailed(Exception):
    """The check's verdict is "failed" (a verdict on data already written: running it again gives the same)."""


@dataclass(frozen=True)
class RunFacts:
    """What the check judges a run by, besides the services.

    ``offsets`` are the transactions topic's end offsets before and after the replay, ``alerts_offsets`` the
    alerts topic's before and after the classifier; ``rows_classified`` the input rows of the classifier's
    batches (its progress file), ``classify_tries`` its try number (0 when it did not run).
    """

    topic: str
    offsets: tuple[dict, dict]
    alerts_topic: str
    alerts_offsets: tuple[dict, dict]
    rows_sent: int
    rows_classified: int
    classify_tries: int

    @classmethod
    def of(cls, snapshots: list[dict], replay_metrics: str, progress_file: str, classify_tries: int | None) -> RunFacts:
        """The facts from the tasks' outputs: the four offset snapshots (``{"topic", "offsets"}``: the topic
        before and after the replay, the alerts topic before and after the classifier), the replay's metrics file
        and the classifier's progress file (absent when it ran no batch). Raises :class:`CheckFailed` when the two
        snapshots of a range were taken on different topics."""
        topics = [s["topic"] for s in snapshots]
        if topics[0] != topics[1] or topics[2] != topics[3]:
            raise CheckFailed(f"offsets were taken on {topics}: the two snapshots of a range on different topics")
        offsets = [s["offsets"] for s in snapshots]
        progress = Path(progress_file)
        batches = [json.loads(line) for line in progress.read_text().splitlines() if line] if progress.is_file() else []
        return cls(topics[0], (offsets[0], offsets[1]), topics[2], (offsets[2], offsets[3]),
                   int(json.loads(Path(replay_metrics).read_text())["rows_sent"]),
                   sum(int(b.get("input_rows") or 0) for b in batches), int(classify_tries or 0))


def sent_transactions(records) -> tuple[dict[str, str], Counter, list[dict]]:
    """``({transaction_id: customer}, {transaction_id: messages}, not_transactions)`` of the messages in the range.

    A message whose value is not a JSON object with ``transaction_id`` and ``customer`` is not a
    transaction (the classifier dead-letters it); it is reported, not looked for in Cassandra.
    """
    sent: dict[str, str] = {}
    times: Counter = Counter()
    others: list[dict] = []
    for partition, offset, key, value in records:
        try:
            message = json.loads(value) if value else None
            tx_id, customer = str(message["transaction_id"]).strip(), str(message["customer"]).strip()
            if not tx_id or not customer:
                raise ValueError("blank transaction_id or customer")
        except (ValueError, TypeError, KeyError) as err:
            others.append({"partition": partition, "offset": offset,
                           "key": key.decode(errors="replace") if key else None, "problem": str(err)[:200]})
            continue
        sent[tx_id] = customer
        times[tx_id] += 1
    return sent, times, others


def alert_counts(records, ids) -> tuple[Counter, int]:
    """``({transaction_id: alert records}, other records)`` of the alerts topic's messages in the range.

    Records, not distinct keys: an alert sent twice counts twice. An alert is keyed by its ``transaction_id``
    (:func:`fraudlab.streaming.alerts.select_alerts`); only the ids in ``ids`` (this run's) are counted, the rest
    (other runs' transactions, messages without a key) are only totalled.
    """
    counts: Counter = Counter()
    for _, _, key, _ in records:
        tx_id = key.decode(errors="replace") if key else None
        if tx_id in ids:
            counts[tx_id] += 1
    return counts, len(records) - sum(counts.values())


def flagged(found: dict, alert_threshold: float) -> set[str]:
    """The ids whose stored ``fraud_score`` reaches the threshold: the alerts the run must have produced."""
    return {t for t, (_, score) in found.items() if score is not None and score >= alert_threshold}


def _named(ids: list[str]) -> str:
    more = f" (and {len(ids) - IDS_IN_MESSAGE} more)" if len(ids) > IDS_IN_MESSAGE else ""
    return ", ".join(ids[:IDS_IN_MESSAGE]) + more


def verdict(sent: dict[str, str], messages: int, rows_sent: int, found: dict, alerted: set[str],
            alert_threshold: float) -> tuple[dict, list[str]]:
    """The Cassandra figures and failures (empty when Cassandra holds what was sent)."""
    missing = sorted(set(sent) - set(found))
    should_alert = flagged(found, alert_threshold)
    alerts_missing = sorted(should_alert - alerted)
    figures = {
        "messages_in_range": messages,
        "rows_sent": rows_sent,
        "transactions_sent": len(sent),
        "in_scored_transactions": len(sent) - len(missing),
        "missing": missing,
        "alerts_expected": len(should_alert),
        "in_alerts_by_day": len(should_alert) - len(alerts_missing),
        "alerts_missing": alerts_missing,
    }
    # Each rule: (broken?, what the failure says).
    rules = [
        (rows_sent <= 0, "the replay sent no transactions (an empty slice, or every row quarantined)"),
        (messages < rows_sent, f"Kafka holds {messages} messages in this run's offset range, the replay reports "
                               f"{rows_sent} sent"),
        (missing, f"Cassandra holds {len(sent) - len(missing)} of the {len(sent)} transactions sent; "
                  f"missing ids: {_named(missing)}"),
        (alerts_missing, f"alerts_by_day holds {len(should_alert) - len(alerts_missing)} of the {len(should_alert)} "
                         f"alerts (fraud_score >= {alert_threshold}); missing ids: {_named(alerts_missing)}"),
    ]
    failures = [message for broken, message in rules if broken]
    return figures, failures


def alerts_verdict(should_alert: set[str], times_sent: Counter, alerts: Counter, classified_outside: int,
                   classify_tries: int) -> tuple[dict, list[str]]:
    """The alerts topic's figures and failures: each flagged transaction alerted, no other of the run's alerted.

    Duplicates (an id alerted more than once) are reported. A plain run sends at most one alert per message
    the classifier was given (copies of a transaction in one micro-batch are scored once; in two batches, twice),
    so an id the range holds twice (a retried replay) may have two; and the classifier also classifies what an
    earlier run left unclassified (the checkpoint), often the same slice: up to ``classified_outside`` alerts
    more (the messages it classified outside the run's range) are explained by that. Beyond that, duplicates
    fail the check unless the classifier was retried (``classify_tries`` > 1). Its alerts are now sent in
    one Kafka transaction per batch that records the batch (:mod:`fraudlab.streaming.delivery`), so a
    retry no longer resends a delivered batch's alerts to this check's ``read_committed`` reader; the
    allowance for a retry is kept until the DAG's own retry test proves that.
    """
    missing = sorted(should_alert - set(alerts))
    unflagged = sorted(set(alerts) - should_alert)
    duplicated = {t: n for t, n in sorted(alerts.items()) if n > 1}
    resent = sum(max(0, n - times_sent[t]) for t, n in alerts.items())
    figures = {
        "alerts_on_topic": sum(alerts.values()),
        "flagged_on_topic": len(should_alert) - len(missing),
        "alerts_missing_on_topic": missing,
        "alerts_unflagged": unflagged,
        "alerts_duplicated": duplicated,
        "alerts_resent": resent,
        "classified_outside_range": classified_outside,
        "classify_tries": classify_tries,
    }
    rules = [
        (missing, f"the alerts topic holds alerts for {len(should_alert) - len(missing)} of the "
                  f"{len(should_alert)} flagged transactions; missing ids: {_named(missing)}"),
        (unflagged, f"the alerts topic holds alerts for {len(unflagged)} transactions this run did not flag: "
                    f"{_named(unflagged)}"),
        (resent > classified_outside and classify_tries <= 1,
         f"the alerts topic holds {resent} alerts beyond one per message classified ({classified_outside} "
         f"classified outside the run's range) and classify_stream was not retried; duplicated ids: "
         f"{_named(list(duplicated))}"),
    ]
    failures = [message for broken, message in rules if broken]
    return figures, failures


def check_run(endpoints: tuple[str, list[str], int], keyspace: str, run: RunFacts, alert_threshold: float,
              client_id: str) -> dict[str, Any]:
    """The check's report: ``passed``, ``failures``, the figures of :func:`verdict` and :func:`alerts_verdict`,
    the offsets and the messages that are not transactions. ``endpoints`` is ``(kafka bootstrap, cassandra hosts,
    cassandra port)``."""
    bootstrap, hosts, port = endpoints
    (before, after), (alerts_before, alerts_after) = run.offsets, run.alerts_offsets
    records = kafka.read_range(bootstrap, run.topic, before, after, client_id)
    sent, times_sent, not_transactions = sent_transactions(records)
    log.info("%s: %d messages in [%s, %s), %d distinct transactions, %d not transactions; the replay sent %d",
             run.topic, len(records), before, after, len(sent), len(not_transactions), run.rows_sent)
    found, alerted = cassandra.read_scored_and_alerts(hosts, port, keyspace, sent) if sent else ({}, set())
    figures, failures = verdict(sent, len(records), run.rows_sent, found, alerted, alert_threshold)

    alert_records = kafka.read_range(bootstrap, run.alerts_topic, alerts_before, alerts_after, client_id)
    alerts, other_alerts = alert_counts(alert_records, set(sent))
    log.info("%s: %d messages in [%s, %s), %d alerts of this run's transactions",
             run.alerts_topic, len(alert_records), alerts_before, alerts_after, sum(alerts.values()))
    outside = max(0, run.rows_classified - len(records))
    alert_figures, alert_failures = alerts_verdict(flagged(found, alert_threshold), times_sent, alerts, outside,
                                                   run.classify_tries)
    failures += alert_failures
    return {"passed": not failures, "failures": failures, "topic": run.topic, "keyspace": keyspace,
            "offsets_before": before, "offsets_after": after, **figures, "not_transactions": not_transactions,
            "alerts_topic": run.alerts_topic, "alerts_offsets_before": alerts_before,
            "alerts_offsets_after": alerts_after, "alert_messages_in_range": len(alert_records),
            "alerts_of_other_transactions": other_alerts, "rows_classified": run.rows_classified, **alert_figures}


def save(result: dict[str, Any], report: str) -> dict[str, Any]:
    """Write the report to ``report`` (JSON); return its figures without the id lists (the task's XCom)."""
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if not result["failures"]:
        log.info("Cassandra (keyspace %s) holds all %d transactions sent and their %d alerts; %s holds %d alerts "
                 "for them (%d duplicated)", result["keyspace"], result["transactions_sent"],
                 result["alerts_expected"], result["alerts_topic"], result["alerts_on_topic"],
                 len(result["alerts_duplicated"]))
    return {k: v for k, v in result.items() if k not in DETAIL_FIELDS}


def run(endpoints: tuple[str, list[str], int], keyspace: str, run_facts: RunFacts, alert_threshold: float,
        report: str, client_id: str) -> dict[str, Any]:
    """The ``check_outputs`` task: :func:`check_run`, the report saved to ``report``; its summary, or
    :class:`CheckFailed` with the failures when the check fails."""
    result = check_run(endpoints, keyspace, run_facts, alert_threshold, client_id)
    summary = save(result, report)
    if result["failures"]:
        raise CheckFailed("; ".join(result["failures"]) + f" (report: {report})")
    return summary
