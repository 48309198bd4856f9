"""Outputs appear whole or not at all: :func:`fraudlab.io.publishing` on the local file system."""

from __future__ import annotations

import os
import time

import pytest

from fraudlab import io
from fraudlab.io import files

pytestmark = pytest.mark.spark


def contents(folder) -> dict[str, str]:
    """The files under ``folder`` and their text, but the file system's ``.crc`` side files."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".crc")}


def earlier(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "part-0").write_text("old 0")
    (folder / "sub" / "part-1").write_text("old 1")
    return contents(folder)


def test_a_publish_replaces_the_folder_whole_and_leaves_nothing_beside_it(spark, tmp_path):
    final = tmp_path / "out"
    earlier(final)
    with io.publishing(spark, str(final)) as staging:
        assert not staging.endswith("/out") and "/." in staging
        io.write_text(spark, f"{staging}/part-9", "new")
        assert contents(final)["part-0"] == "old 0"  # readers still see the earlier version
    assert contents(final) == {"part-9": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_body_leaves_the_earlier_folder_and_removes_its_staging(spark, tmp_path):
    final = tmp_path / "out"
    before = earlier(final)
    with pytest.raises(RuntimeError, match="half-way"):
        with io.publishing(spark, str(final)) as staging:
            io.write_text(spark, f"{staging}/part-9", "half")
            raise RuntimeError("half-way")
    assert contents(final) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_first_publish_creates_the_folder(spark, tmp_path):
    final = tmp_path / "new" / "out"
    with io.publishing(spark, str(final)) as staging:
        io.write_text(spark, f"{staging}/a", "a")
    assert contents(final) == {"a": "a"}


def test_two_runs_publishing_one_folder_replace_it_in_turn_never_into_each_other(spark, tmp_path):
    final = tmp_path / "out"
    earlier(final)
    with io.publishing(spark, str(final)) as first:
        io.write_text(spark, f"{first}/from", "first")
        with io.publishing(spark, str(final)) as second:
            io.write_text(spark, f"{second}/from", "second")
        assert contents(final) == {"from": "second"}
    assert contents(final) == {"from": "first"}  # the later swap wins, whole, with nothing nested
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_lock_left_by_a_killed_publish_is_broken_once_stale(spark, tmp_path):
    final = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    lock.write_text("")
    old = time.time() - files.STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    with io.publishing(spark, str(final)) as staging:
        io.write_text(spark, f"{staging}/a", "a")
    assert contents(final) == {"a": "a"} and not lock.exists()


def test_left_overs_of_killed_publishes_are_cleared_once_stale_and_kept_while_recent(spark, tmp_path):
    stale, recent = tmp_path / ".out.staging-dead", tmp_path / ".out.staging-busy"
    for folder in (stale, recent):
        folder.mkdir()
        (folder / "part-0").write_text("x")
    old = time.time() - files.STALE_STAGING_SECONDS - 5
    os.utime(stale, (old, old))
    with io.publishing(spark, str(tmp_path / "out")) as staging:
        io.write_text(spark, f"{staging}/a", "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.staging-busy", "out"]
