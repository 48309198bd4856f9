"""The classifier's checkpoint, checked before the query starts: a lost or damaged one is refused.

Spark keeps a streaming query's progress in its checkpoint folder: ``metadata`` (the query's id),
``offsets/<batch>`` (the input each batch planned), ``commits/<batch>`` (the batches done) and
``sources/``. Started on an empty folder, ``classify_stream.py`` reads its topic from the earliest
offset, as a first start should. Started on a folder that *lost* its checkpoint (deleted, or a
volume not mounted), it would do the same without a word: every transaction classified again and,
since the new query has a new id and so a new Kafka transactional ledger
(:mod:`fraudlab.streaming.delivery`), every alert sent a second time. And Spark answers a damaged
file of the folder with a JVM stack trace.

So, before Spark starts:

* :func:`inspect` reads the folder: no folder or an empty one is a new checkpoint; one whose
  ``metadata`` or latest ``offsets``/``commits`` file is not what Spark writes is
  :class:`CheckpointError`, one sentence naming the file;
* each batch of a query records, in the keyspace's ``stream_checkpoints`` table, that its checkpoint
  folder belongs to its query (:func:`fraudlab.streaming.sink.stamp_checkpoint`), so a folder found
  empty where a query kept its progress is refused (:func:`lost_message`) unless the user asks for a
  new start (``--new-checkpoint``).

Only a local folder (a path, or a ``file:`` URI) is read here; on HDFS or S3 Spark's own errors stand,
and the stamp still guards a lost folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: Version lines of Spark's offset and commit logs (``v1``; later Sparks may write higher numbers).
_VERSION = re.compile(r"^v(\d+)$")


class CheckpointError(ValueError):
    """The checkpoint folder holds files Spark could not resume from."""


@dataclass(frozen=True)
class CheckpointState:
    """What a checkpoint folder holds."""

    #: The folder as the stamp names it: an absolute path for a local folder, else the URI as given.
    key: str
    #: The query whose progress the folder holds; None for a new (missing or empty) folder.
    query_id: str | None = None
    #: The latest batch planned (``offsets/``), None when none was.
    last_batch: int | None = None
    #: False for a folder this module cannot read (HDFS, S3): only the stamp guards it.
    local: bool = True


def local_folder(location: str) -> Path | None:
    """The local folder of ``location`` (a path or a ``file:`` URI); None for any other file system."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # a Windows drive letter is not a scheme
        return None
    return Path(location)


def _batch_files(folder: Path) -> dict[int, Path]:
    """``{batch id: file}`` of a Spark log folder (``offsets`` or ``commits``); its ``.crc`` and temp files skipped."""
    if not folder.is_dir():
        return {}
    return {int(p.name): p for p in folder.iterdir() if p.name.isdigit() and p.is_file()}


def _check_log_file(path: Path, what: str) -> None:
    """A Spark log file: a ``v<N>`` line, then JSON lines (``-`` for a source without an offset)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} ({what}) cannot be read: {err}") from None
    if not lines or not _VERSION.match(lines[0].strip()):
        raise CheckpointError(f"{path} ({what}) does not start with a log version line such as 'v1'")
    body = [line for line in lines[1:] if line.strip()]
    if not body:
        raise CheckpointError(f"{path} ({what}) holds a version line and nothing else")
    for number, line in enumerate(body, start=2):
        if line.strip() == "-":
            continue
        try:
            json.loads(line)
        except ValueError:
            raise CheckpointError(f"{path} ({what}) line {number} is not JSON") from None


def _query_id(metadata: Path) -> str:
    try:
        content: Any = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{metadata} is not the JSON Spark writes there (the query's id)") from None
    if not isinstance(content, dict) or not isinstance(content.get("id"), str) or not content["id"].strip():
        raise CheckpointError(f"{metadata} names no query id")
    return content["id"]


def inspect(location: str) -> CheckpointState:
    """Read the checkpoint folder ``location``; :class:`CheckpointError` when Spark could not resume from it.

    A missing folder or one without ``metadata``, ``offsets`` and ``commits`` is new. Otherwise
    ``metadata`` must name the query, the latest ``offsets`` and ``commits`` files must be Spark log
    files, and no batch may be committed that was never planned.
    """
    folder = local_folder(location)
    if folder is None:
        return CheckpointState(key=location, local=False)
    key = str(folder.absolute())
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder")
    metadata = folder / "metadata"
    offsets, commits = _batch_files(folder / "offsets"), _batch_files(folder / "commits")
    if not metadata.exists():
        if offsets or commits:
            raise CheckpointError(f"{metadata} is missing, though the folder holds batches of a query")
        return CheckpointState(key=key)
    query_id = _query_id(metadata)
    if offsets:
        _check_log_file(offsets[max(offsets)], "the latest batch's offsets")
    if commits:
        _check_log_file(commits[max(commits)], "the latest committed batch")
        if not offsets or max(commits) > max(offsets):
            raise CheckpointError(f"{folder / 'commits'} records batch {max(commits)}, which "
                                  f"{folder / 'offsets'} never planned")
    return CheckpointState(key=key, query_id=query_id, last_batch=max(offsets) if offsets else None)


#: What to do, said after each refusal.
ADVICE = ("restore the folder from a copy, or pass --new-checkpoint with an empty folder to start over on "
          "purpose (the topic is then classified from its earliest offset again: the rows are rewritten in "
          "Cassandra, and alerts already sent are sent a second time)")


def damaged_message(location: str, err: CheckpointError) -> str:
    return f"checkpoint {location} is damaged: {err}; {ADVICE}"


def lost_message(location: str, keyspace: str, stamp: dict[str, Any]) -> str:
    """The refusal of a folder found empty where ``stamp``'s query kept its progress."""
    return (f"checkpoint {location} is empty, but query {stamp['query_id']} kept its progress there and "
            f"fed keyspace {keyspace} from topic {stamp['topic']} "
            f"(last started {stamp['started_at']:%Y-%m-%d %H:%M:%S} UTC): the checkpoint was lost; {ADVICE}")


def refusal(state: CheckpointState, new_checkpoint: bool, keyspace: str,
            read_stamp: Callable[[str], dict[str, Any] | None]) -> str | None:
    """Why the classifier must not start on ``state``'s folder, or None when it may.

    A folder holding a query resumes it (``--new-checkpoint`` is then refused: it would not start
    over). A new folder is refused when ``read_stamp(state.key)`` (the keyspace's record of the
    folder) says a query kept its progress there, unless ``new_checkpoint`` asks for a new start.
    A folder that is not local is Spark's to judge.
    """
    if state.query_id is not None:
        if new_checkpoint:
            return (f"--new-checkpoint: checkpoint {state.key} holds the progress of query {state.query_id}, "
                    "which would resume, not start over; give --new-checkpoint an empty folder")
        return None
    if new_checkpoint or not state.local:
        return None
    stamp = read_stamp(state.key)
    return lost_message(state.key, keyspace, stamp) if stamp else None
