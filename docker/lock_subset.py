"""Write each image's requirements file as a hash-pinned subset of requirements.lock.

The lock file pins the whole project (Spark apps, Airflow, Jupyter, dev tools) with hashes. An image
needs only part of it, so each image installs a subset cut from the lock itself: same versions, same
hashes, no second resolution. The subset is the closure of a few root packages over the lock's
``# via`` annotations (a package is kept when one of the packages that pulled it in is kept), which
is exactly the dependency graph uv resolved.

Usage, from the repository root::

    .venv/bin/python docker/lock_subset.py          # rewrite docker/*/requirements.txt
    .venv/bin/python docker/lock_subset.py --check  # exit 1 if one is out of date

tests/stack/test_consistency.py runs ``--check`` logic, so a lock change without a regenerated
subset fails the suite.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"

#: What the Spark apps import on the driver and the executors: pyspark with its [ml,sql] extras'
#: dependencies, MLflow (registry), matplotlib (reports), the Cassandra driver and kafka-python
#: (streaming sink and replayer). No Airflow, no Jupyter, no dev tools: a smaller cluster image.
SPARK_ROOTS = (
    "pyspark", "numpy", "pandas", "pyarrow", "mlflow", "matplotlib", "cassandra-driver", "kafka-python",
)

#: The image subsets, by image folder under docker/. The Airflow image runs the spark-submit drivers
#: (LocalExecutor, client mode), so it needs every Spark root too, plus Airflow and its providers.
SUBSETS: dict[str, tuple[str, ...]] = {
    "spark": SPARK_ROOTS,
    "jupyter": (*SPARK_ROOTS, "jupyterlab", "ipykernel", "scikit-learn"),
    "airflow": (
        *SPARK_ROOTS,
        "pyspark-client",
        "apache-airflow",
        "apache-airflow-providers-apache-spark",
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-postgres",
    ),
}

#: Extras the roots are installed with (pyproject.toml asks for pyspark[ml,sql]); the closure check
#: in the tests follows these when it reads the installed packages' metadata.
ROOT_EXTRAS = {"pyspark": ("ml", "sql")}

_REQ_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^ \\]+)")
_VIA_INLINE = re.compile(r"^\s+#\s+via\s+(?P<parent>\S.*)$")
_VIA_HEADER = re.compile(r"^\s+#\s+via\s*$")
_VIA_ITEM = re.compile(r"^\s+#\s{3,}(?P<parent>\S.*)$")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    """One package block of the lock: its ``name==version`` line, hash lines and parents."""

    name: str
    version: str
    lines: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Pin]:
    """Pins of a ``uv pip compile --generate-hashes`` output, keyed by normalized name."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via_list = False
    for line in text.splitlines():
        if match := _REQ_LINE.match(line):
            current = Pin(normalize(match["name"]), match["version"], [line])
            pins[current.name] = current
            in_via_list = False
        elif current is None:
            continue
        elif line.lstrip().startswith("--hash="):
            current.lines.append(line)
        elif match := _VIA_INLINE.match(line):
            current.parents.add(match["parent"].strip())
            in_via_list = False
        elif _VIA_HEADER.match(line):
            in_via_list = True
        elif in_via_list and (match := _VIA_ITEM.match(line)):
            current.parents.add(match["parent"].strip())
    # Parents are package names, or a source such as "fraudlab (pyproject.toml)" for direct pins.
    for pin in pins.values():
        pin.parents = {normalize(p) for p in pin.parents if "(" not in p and not p.startswith("-")}
    return pins


def closure(pins: dict[str, Pin], roots: tuple[str, ...]) -> list[str]:
    """Names of the roots and of every pin pulled in, transitively, by one already kept."""
    wanted = {normalize(r) for r in roots}
    missing = sorted(wanted - pins.keys())
    if missing:
        raise SystemExit(f"lock_subset: roots not in requirements.lock: {', '.join(missing)}")
    changed = True
    while changed:
        changed = False
        for name, pin in pins.items():
            if name not in wanted and pin.parents & wanted:
                wanted.add(name)
                changed = True
    return sorted(wanted)


def render(image: str, pins: dict[str, Pin], roots: tuple[str, ...]) -> str:
    """The requirements file of one image: a header, then the kept lock blocks verbatim."""
    names = closure(pins, roots)
    header = [
        f"# {image} image: generated from requirements.lock by docker/lock_subset.py; do not edit.",
        f"# Roots: {', '.join(roots)}.",
        f"# {len(names)} pins, hashes as locked; install with pip install --require-hashes -r <this file>.",
    ]
    body = ["\n".join(pins[name].lines) for name in names]
    return "\n".join(header + body) + "\n"


def target(image: str) -> Path:
    return REPO / "docker" / image / "requirements.txt"


def expected_files(lock_text: str | None = None) -> dict[Path, str]:
    """Every image's requirements file as it should read for the current lock."""
    pins = parse_lock(lock_text if lock_text is not None else LOCK.read_text())
    return {target(image): render(image, pins, roots) for image, roots in SUBSETS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print("out of date (run docker/lock_subset.py):", *map(str, stale), sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
