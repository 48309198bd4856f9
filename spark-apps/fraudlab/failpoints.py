"""Failpoints: the tests' way to kill an app at an exact point of its work, as a crash would (SIGKILL).

``FRAUDLAB_FAILPOINT=<point>:<where>`` names the point (:data:`POINTS`) and where it fires: a batch
id for the classifier's points, a folder's name for ``before_swap`` (a published folder whose
staging copy is complete and not yet swapped in: :func:`fraudlab.io.publishing`). With
``FRAUDLAB_FAILPOINT_ONCE=<file>`` it fires only for the run that creates that file, so a task
retried with the same environment (Airflow's retries) dies once and then runs through.

Unset, a failpoint costs one environment look-up. A value that names no point is an error: a test
that means to kill an app must not pass because a typo never fires.
"""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)

FAILPOINT_ENV = "FRAUDLAB_FAILPOINT"
ONCE_ENV = "FRAUDLAB_FAILPOINT_ONCE"
#: The classifier's points (``<point>:<batch id>``): after a batch's Cassandra write (before any Kafka
#: message), and after its Kafka transaction committed (before Spark commits the batch).
BATCH_POINTS = ("after_cassandra", "after_kafka")
#: Every point: the classifier's, and ``before_swap:<folder name>`` of a published folder.
POINTS = (*BATCH_POINTS, "before_swap")


def failpoint(point: str, where: str | int) -> None:
    """SIGKILL this app (its Python process and the spark-submit JVM that runs it) when
    :data:`FAILPOINT_ENV` names ``point`` at ``where``; else nothing."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted:
        return
    name, _, at = wanted.partition(":")
    if name not in POINTS or not at or (name in BATCH_POINTS and not at.isdigit()):
        raise ValueError(f"{FAILPOINT_ENV}={wanted!r} is not <point>:<batch id or folder name> with a point "
                         f"of {POINTS}")
    if wanted != f"{point}:{where}":
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # an earlier run died here already
    log.warning("failpoint %s:%s: killing the app (SIGKILL)", point, where)
    time.sleep(0.5)  # spark-submit passes the driver's output on from a thread of its JVM: let the line through
    parent = os.getppid()
    try:  # spark-submit's JVM runs this driver: it dies first, so it commits nothing more
        with open(f"/proc/{parent}/comm") as comm:
            if comm.read().strip() == "java":
                os.kill(parent, signal.SIGKILL)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
