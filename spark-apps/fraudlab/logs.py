"""One logging set-up for every app: the apps' own lines on stderr, in one format; errors as one line."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr in the lab's format, replacing whatever configured logging before.

    ``force=True`` matters: pyspark may have installed a handler on the root logger
    already, which would make a plain ``basicConfig`` a silent no-op.
    """
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def first_line(err: BaseException, limit: int = 300) -> str:
    """An error as one log line: the first line of its text, at most ``limit`` characters.

    For a Py4J error, the first line of its Java exception (``class: message``), not Py4J's
    "An error occurred while calling ..." and the JVM's stack after it.
    """
    java = getattr(err, "java_exception", None)
    text = str(java.toString() if java is not None else err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]
