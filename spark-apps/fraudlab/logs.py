"""One logging set-up for every app: the apps' own lines on stderr, in one format."""

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
