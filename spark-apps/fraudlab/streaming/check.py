"""The streaming DAG's verdict: does Cassandra hold every transaction the replay sent, and every alert?

:func:`check_run` does it all: :func:`fraudlab.io.kafka.read_range` reads the run's messages,
:func:`sent_transactions` keeps the transactions, :func:`fraudlab.io.cassandra.read_scored_and_alerts`
looks them up, and :func:`verdict` judges.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fraudlab.io import cassandra, kafka

#: The DAG's logger: the check's lines read "fraud_streaming: ..." in the task log.
log = logging.getLogger("fraud_streaming")
#: Missing ids named in the failure message (all of them go to check_cassandra.json).
IDS_IN_MESSAGE = 10


def sent_transactions(records) -> tuple[dict[str, str], list[dict]]:
    """``({transaction_id: customer}, not_transactions)`` of the messages in the range.

    A message whose value is not a JSON object with ``transaction_id`` and ``customer`` is not a
    transaction (the classifier dead-letters it); it is reported, not looked for in Cassandra.
    """
    sent: dict[str, str] = {}
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
    return sent, others


def verdict(sent: dict[str, str], messages: int, rows_sent: int, found: dict, alerted: set[str],
            alert_threshold: float) -> tuple[dict, list[str]]:
    """The check's figures and its failures (empty when Cassandra holds what was sent)."""
    missing = sorted(set(sent) - set(found))
    should_alert = {t for t, (_, score) in found.items() if score is not None and score >= alert_threshold}
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
    failures = []
    if rows_sent <= 0:
        failures.append("the replay sent no transactions (an empty slice, or every row quarantined)")
    if messages < rows_sent:
        failures.append(f"Kafka holds {messages} messages in this run's offset range, the replay reports "
                        f"{rows_sent} sent")
    if missing:
        failures.append(f"Cassandra holds {len(sent) - len(missing)} of the {len(sent)} transactions sent; "
                        f"missing ids: {', '.join(missing[:IDS_IN_MESSAGE])}"
                        + (f" (and {len(missing) - IDS_IN_MESSAGE} more)" if len(missing) > IDS_IN_MESSAGE else ""))
    if alerts_missing:
        failures.append(f"alerts_by_day holds {len(should_alert) - len(alerts_missing)} of the {len(should_alert)} "
                        f"alerts (fraud_score >= {alert_threshold}); missing ids: "
                        f"{', '.join(alerts_missing[:IDS_IN_MESSAGE])}")
    return figures, failures


def check_run(endpoints: tuple[str, list[str], int], topic: str, keyspace: str, offsets: tuple[dict, dict],
              rows_sent: int, alert_threshold: float, client_id: str) -> dict[str, Any]:
    """The check's report: ``passed``, ``failures``, the figures of :func:`verdict`, the offsets and the
    messages that are not transactions. ``endpoints`` is ``(kafka bootstrap, cassandra hosts, cassandra port)``
    and ``offsets`` the end offsets before and after the replay."""
    bootstrap, hosts, port = endpoints
    before, after = offsets
    records = kafka.read_range(bootstrap, topic, before, after, client_id)
    sent, not_transactions = sent_transactions(records)
    log.info("%s: %d messages in [%s, %s), %d distinct transactions, %d not transactions; the replay sent %d",
             topic, len(records), before, after, len(sent), len(not_transactions), rows_sent)
    found, alerted = cassandra.read_scored_and_alerts(hosts, port, keyspace, sent) if sent else ({}, set())
    figures, failures = verdict(sent, len(records), rows_sent, found, alerted, alert_threshold)
    return {"passed": not failures, "failures": failures, "topic": topic, "keyspace": keyspace,
            "offsets_before": before, "offsets_after": after, **figures, "not_transactions": not_transactions}
