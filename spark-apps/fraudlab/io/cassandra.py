"""The one way the lab opens a cassandra-driver session, and the reads of the streaming DAG's check.

Every client of Cassandra (the stream's sink, the notebooks, the service runner, the DAG's check)
connects through :func:`connect`: round-robin over the given nodes (one node, or a few without
data-centre awareness: no DC guess in the log), protocol v5, one timeout for connecting and requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def connect(hosts: Sequence[str], port: int, keyspace: str | None = None, timeout: float = 10.0,
            **cluster_options: Any):
    """A cassandra-driver ``Session`` (on ``keyspace`` when given); close it with ``session.cluster.shutdown()``.

    ``cluster_options`` go to ``Cluster`` as they are (a reconnection policy, ``schema_metadata_enabled``).
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout)
    cluster = Cluster(list(hosts), port=int(port), protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      connect_timeout=timeout, control_connection_timeout=timeout, **cluster_options)
    try:
        return cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise


def read_scored_and_alerts(hosts: Sequence[str], port: int, keyspace: str,
                           sent: dict[str, str]) -> tuple[dict[str, tuple], set[str]]:
    """``({transaction_id: (event_time, fraud_score)} of the sent ids found in scored_transactions,
    the ids of those found in alerts_by_day)``. Reads per customer and per alert day (partition keys)."""
    from cassandra.concurrent import execute_concurrent_with_args

    session = connect(hosts, port, timeout=30)
    try:
        scored_cql = session.prepare(f"SELECT transaction_id, event_time, fraud_score "
                                     f"FROM {keyspace}.scored_transactions WHERE customer = ?")
        wanted = set(sent)
        found: dict[str, tuple] = {}
        customers = [(c,) for c in sorted(set(sent.values()))]
        for _, result in execute_concurrent_with_args(session, scored_cql, customers, concurrency=32,
                                                      raise_on_first_error=True):
            for row in result:
                if row.transaction_id in wanted:
                    found[row.transaction_id] = (row.event_time, row.fraud_score)
        days = sorted({event_time.date() for event_time, _ in found.values() if event_time is not None})
        alerts_cql = session.prepare(f"SELECT transaction_id FROM {keyspace}.alerts_by_day WHERE alert_date = ?")
        alerted: set[str] = set()
        for _, result in execute_concurrent_with_args(session, alerts_cql, [(d,) for d in days], concurrency=16,
                                                      raise_on_first_error=True):
            alerted.update(row.transaction_id for row in result if row.transaction_id in wanted)
        return found, alerted
    finally:
        session.cluster.shutdown()
