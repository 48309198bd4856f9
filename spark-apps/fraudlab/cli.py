"""The apps' command lines: one parser that answers a bad flag with one line and exit 2, and the flag types.

Every app builds its flags with :func:`parser`. A value argparse cannot take (``--rows -5``,
``--start-date 2024-13-01``, ``--trigger-interval soon``) ends the app before Spark starts with
one line on stderr naming the flag and what is wrong, and exit code 2; nothing is read or written.
The types below say in their message what a good value looks like.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``<app>: <flag>: <what is wrong>``, and exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see --help)\n")
        raise SystemExit(2)


def run(main: Callable[[], int], log: logging.Logger) -> int:
    """Run an app's ``main``; an output it could not publish (:class:`fraudlab.io.PublishError`: a full
    disk, a file system gone) ends it with that one sentence on ``log`` and exit 1, not a stack trace."""
    from fraudlab.io import PublishError

    try:
        return main()
    except PublishError as err:
        log.error("%s", err)
        return 1


def parser(doc: str | None, prog: str | None = None) -> OneLineParser:
    """The app's parser, described by the first line of its docstring."""
    return OneLineParser(prog=prog, description=doc.splitlines()[0] if doc else None)


def _number(kind: type, low: float | None, high: float | None, low_open: bool = False,
            high_open: bool = False) -> Callable[[str], float]:
    words = []
    if low is not None:
        words.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        words.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = f"{'an integer' if kind is int else 'a number'}{' ' + ' and '.join(words) if words else ''}"

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value)
                and (low is None or (value > low if low_open else value >= low))
                and (high is None or (value < high if high_open else value <= high))):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    return convert


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer flag ``>= low``."""
    return _number(int, low, None)


def number_at_least(low: float, open_: bool = False) -> Callable[[str], float]:
    """A finite number ``>= low`` (``> low`` with ``open_``)."""
    return _number(float, low, None, low_open=open_)


def number_between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (ends open as asked)."""
    return _number(float, low, high, low_open, high_open)


#: A TCP port, 1 to 65535.
port = _number(int, 1, 65535)


def rate(text: str) -> float | None:
    """Rows per second, ``> 0``; ``0`` means no pace (as fast as possible) and gives None."""
    value = number_at_least(0.0)(text)
    return None if value == 0 else value


#: A share or a probability: ``[0, 1]``.
probability = number_between(0.0, 1.0)


def iso_date(text: str) -> str:
    """A calendar date ``YYYY-MM-DD``, returned as given."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    return text


def month(text: str) -> str:
    """A month ``YYYY-MM``."""
    from fraudlab.config import MONTH_REGEX

    if not re.match(MONTH_REGEX, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month YYYY-MM")
    return text


#: The units of a Spark interval string (``"2 seconds"``, ``"500 milliseconds"``, ``"1 minute 30 seconds"``).
_INTERVAL_UNITS = "week|day|hour|minute|second|millisecond|microsecond"
_INTERVAL = re.compile(rf"^\s*(interval\s+)?(\d+\s*({_INTERVAL_UNITS})s?\s*)+$", re.IGNORECASE)


def interval(text: str) -> str:
    """A Spark interval for a trigger, e.g. ``"2 seconds"``; more than zero."""
    if not _INTERVAL.match(text) or not any(int(n) for n in re.findall(r"\d+", text)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an interval such as '2 seconds' or '500 milliseconds' (more than zero)")
    return text.strip()
