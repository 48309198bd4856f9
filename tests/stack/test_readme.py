"""The README tells the truth about the stack: its map, its start command and its ports table.

The ports table is compared with what the real Compose binary renders for the merged project,
the start command with the Makefile's ``up`` target, and every path of the map must exist.
"""

from __future__ import annotations

import os
import re
import subprocess

from tests.stack import FILE_SETS, REPO, compose_config

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_every_path_of_the_map_exists():
    rows = re.findall(r"^\| (`[^|]+`) \|", _section("Map of the repository"), re.MULTILINE)
    paths = [p for row in rows for p in re.findall(r"`([^`]+)`", row)]
    assert len(paths) >= 15, paths
    missing = [p for p in paths if not (REPO / p.rstrip("/")).exists() and p != "data/"]
    assert missing == []


def test_every_top_level_entry_is_in_the_map():
    mapped = {p.rstrip("/").split("/")[0]
              for p in re.findall(r"`([^`]+)`", _section("Map of the repository"))}
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    top = {line.split("/")[0] for line in tracked.stdout.splitlines()}
    ignored = {"README.md", ".gitignore", ".dockerignore", ".hadolint.yaml", "uv.lock"}
    assert sorted(top - mapped - ignored) == []


def test_the_readme_start_command_is_what_make_up_runs():
    assert "docker compose -f docker-compose.yml -f airflow-compose.yaml up -d" in README
    # Under `make test` the parent make's MAKEFLAGS/MAKELEVEL would make this one print "Entering directory".
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "up", "down"], cwd=REPO, capture_output=True,
                         text=True, check=True, env=env)
    assert dry.stdout.splitlines() == [
        "docker compose -f docker-compose.yml -f airflow-compose.yaml up -d --build",
        "docker compose -f docker-compose.yml -f airflow-compose.yaml down",
    ]


def test_the_ports_table_matches_the_rendered_stack():
    table = _section("The lab stack (Docker)")
    documented = sorted(int(p) for row in re.findall(r"^\| [^|]+ \| ([\d /,]+) \|", table, re.MULTILINE)
                        for p in re.findall(r"\d+", row))
    config = compose_config(FILE_SETS["merged"])
    published = sorted(int(p["published"]) for service in config["services"].values()
                       for p in service.get("ports") or [])
    assert documented == published
    for port in published:  # every published port is bound to the loopback interface by default
        assert all(p["host_ip"] == "127.0.0.1" for s in config["services"].values()
                   for p in s.get("ports") or [] if int(p["published"]) == port)
