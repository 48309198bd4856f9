#!/usr/bin/env python3
"""Container healthcheck: exit 0 when every URL answers HTTP 2xx/3xx in time, else 1.

Installed in the Spark image as ``healthcheck-http`` (no curl or wget there; Python always is).
An optional ``--json KEY=VALUE`` also requires the (JSON) body of each URL to hold that top-level
value, e.g. the Spark master's ``/json/`` answers ``"status": "ALIVE"`` once it is the leader::

    healthcheck-http http://localhost:8080/json/ --json status=ALIVE
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def check(url: str, timeout: float, expect: dict[str, str]) -> str | None:
    """None when ``url`` is healthy, else one line saying why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed local URLs
            body = response.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    if not expect:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return f"{url}: body is not JSON"
    for key, value in expect.items():
        if str(document.get(key)) != value:
            return f"{url}: {key}={document.get(key)!r}, want {value!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--json", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    expect = dict(item.split("=", 1) for item in args.json)
    problems = [p for p in (check(url, args.timeout, expect) for url in args.urls) if p]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
