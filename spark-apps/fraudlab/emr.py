"""Amazon EMR operators that a retry cannot double: the run's cluster and its steps are made once.

``EmrCreateJobFlowOperator`` and ``EmrAddStepsOperator`` are not idempotent: when a try dies after
AWS accepted its call (a worker lost, a time-out while the answer was on its way), the retry starts a
second paid cluster, or adds the four steps again, so the pipeline runs twice and two runs write the
same published outputs. The subclasses here look first for what an earlier try of the same task
made, by the names this run gives it, and only call AWS when there is nothing:

- :class:`EmrCreateJobFlowOnceOperator`: an active cluster of the same ``Name`` (the DAG names it
  after the run id) is this run's; its id is returned, and no second cluster is started;
- :class:`EmrAddStepsOnceOperator`: when the cluster already holds steps of every name to be added,
  their ids are returned in order, and none is added again (``AddJobFlowSteps`` adds a list whole
  or not at all, so some names without the others mean the cluster is not this run's: the task fails);
- :class:`EmrStepOutcomeSensor`: a step that ended FAILED or CANCELLED fails the watch at once, with
  no retry (it stays failed), while an error of the watch itself (a throttled or dropped API call) is
  retried: one such error must not end the watch, which would let the teardown terminate the
  cluster while its step still writes.

Airflow's Amazon provider is imported here at the top: only the DAG files import this module, never
the Spark apps (it ships in their zip unused).
"""

from __future__ import annotations

import ast
from typing import Any

from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.sdk.exceptions import AirflowException, AirflowFailException

#: Cluster states in which a cluster made by an earlier try can still run this run's steps.
ACTIVE_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]


def _literal(value: Any) -> Any:
    """A templated field that may arrive as the text of a Python literal (from XCom or a file)."""
    return ast.literal_eval(value) if isinstance(value, str) else value


class EmrCreateJobFlowOnceOperator(EmrCreateJobFlowOperator):
    """``EmrCreateJobFlowOperator`` that reuses the active cluster an earlier try made (same ``Name``)."""

    def execute(self, context):
        name = _literal(self.job_flow_overrides)["Name"]
        existing = self.hook.get_cluster_id_by_name(name, ACTIVE_STATES)
        if existing:
            self.log.info("cluster %s (%s) was started by an earlier try: using it, starting none", name, existing)
            return existing
        return super().execute(context)


class EmrAddStepsOnceOperator(EmrAddStepsOperator):
    """``EmrAddStepsOperator`` that adds nothing when an earlier try already added the steps."""

    def execute(self, context):
        names = [step["Name"] for step in _literal(self.steps)]
        added: dict[str, str] = {}
        for page in self.hook.conn.get_paginator("list_steps").paginate(ClusterId=self.job_flow_id):
            for step in page["Steps"]:
                added.setdefault(step["Name"], step["Id"])
        found = [name for name in names if name in added]
        if found and len(found) == len(names):
            self.log.info("cluster %s already holds the steps %s (an earlier try added them): adding none",
                          self.job_flow_id, ", ".join(names))
            return [added[name] for name in names]
        if found:
            raise AirflowException(f"cluster {self.job_flow_id} holds the steps {found} but not the others of "
                                   f"{names}: it is not this run's cluster, or someone added steps by hand")
        return super().execute(context)


class EmrStepOutcomeSensor(EmrStepSensor):
    """``EmrStepSensor`` whose failed step fails the task for good; other errors take the task's retries."""

    def poke(self, context):
        try:
            return super().poke(context)
        except AirflowFailException:
            raise
        except AirflowException as err:  # the provider's "EMR job failed": the step's own end state
            raise AirflowFailException(str(err)) from err
