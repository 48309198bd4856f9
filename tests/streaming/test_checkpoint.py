"""The classifier's checkpoint guard (``fraudlab.streaming.checkpoint``) on folders made here; no Spark.

The folders are written in the layout Spark's own checkpoint has (``metadata``, ``offsets/<batch>``,
``commits/<batch>``, each log file a ``v1`` line and JSON lines); the end-to-end test of a real
checkpoint lost or damaged under the classifier is in ``tests/streaming/test_streaming_e2e.py``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from fraudlab.streaming import checkpoint

QUERY_ID = "0b5a4f8e-5f7e-4a53-9d0e-3a9d1c0c2f11"
STAMP = {"checkpoint": "x", "query_id": QUERY_ID, "topic": "transactions",
         "started_at": dt.datetime(2026, 12, 8, 1, 2, 3)}


def spark_checkpoint(folder, batches: int = 2, committed: int = 2):
    """A checkpoint as Spark leaves it after ``batches`` planned and ``committed`` done (with .crc side files)."""
    folder.mkdir(parents=True)
    (folder / "metadata").write_text(json.dumps({"id": QUERY_ID}) + "\n")
    for name in ("offsets", "commits", "sources/0"):
        (folder / name).mkdir(parents=True)
    for batch in range(batches):
        (folder / "offsets" / str(batch)).write_text(
            'v1\n{"batchWatermarkMs":0,"batchTimestampMs":1765000000000,"conf":{}}\n'
            f'{{"transactions":{{"0":{100 * (batch + 1)}}}}}\n')
        (folder / "offsets" / f".{batch}.crc").write_bytes(b"crc\x00")
    for batch in range(committed):
        (folder / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')
    return folder


def test_a_missing_or_empty_folder_is_a_new_checkpoint(tmp_path):
    assert checkpoint.inspect(str(tmp_path / "absent")) == checkpoint.CheckpointState(key=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    state = checkpoint.inspect(f"file://{tmp_path / 'empty'}")
    assert (state.query_id, state.key, state.local) == (None, str(tmp_path / "empty"), True)


def test_a_sound_checkpoint_names_its_query_and_latest_batch(tmp_path):
    state = checkpoint.inspect(str(spark_checkpoint(tmp_path / "ck", batches=3, committed=2)))
    assert (state.query_id, state.last_batch) == (QUERY_ID, 2)


def test_a_relative_folder_is_keyed_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoint.inspect("data/ck").key == str(tmp_path / "data" / "ck")


@pytest.mark.parametrize("damage, said", [
    (lambda ck: (ck / "metadata").write_text("{not json"), "metadata is not the JSON Spark writes"),
    (lambda ck: (ck / "metadata").write_text('{"id": ""}'), "names no query id"),
    (lambda ck: (ck / "metadata").unlink(), "metadata is missing, though the folder holds batches"),
    (lambda ck: (ck / "offsets" / "1").write_bytes(b"\x00\x01garbage"), "offsets/1 (the latest batch's offsets)"),
    (lambda ck: (ck / "offsets" / "1").write_text("v1\n"), "holds a version line and nothing else"),
    (lambda ck: (ck / "offsets" / "1").write_text('v1\n{"a":1}\n{"transactions":'), "line 3 is not JSON"),
    (lambda ck: (ck / "commits" / "1").write_text(""), "commits/1 (the latest committed batch) does not start"),
    (lambda ck: (ck / "commits" / "5").write_text('v1\n{"nextBatchWatermarkMs":0}'), "records batch 5, which"),
])  # fmt: skip
def test_a_damaged_checkpoint_is_one_sentence_naming_the_file(tmp_path, damage, said):
    ck = spark_checkpoint(tmp_path / "ck")
    damage(ck)
    with pytest.raises(checkpoint.CheckpointError) as caught:
        checkpoint.inspect(str(ck))
    message = checkpoint.damaged_message(str(ck), caught.value)
    assert said in message and "\n" not in message
    assert message.startswith(f"checkpoint {ck} is damaged: ") and "--new-checkpoint" in message


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "ck").write_text("x")
    with pytest.raises(checkpoint.CheckpointError, match="is a file, not a checkpoint folder"):
        checkpoint.inspect(str(tmp_path / "ck"))


def test_a_folder_on_another_file_system_is_left_to_spark_and_never_refused():
    state = checkpoint.inspect("s3a://bucket/checkpoints/classify_stream")
    assert (state.local, state.query_id, state.key) == (False, None, "s3a://bucket/checkpoints/classify_stream")
    assert checkpoint.refusal(state, False, "fraudlab", lambda key: STAMP) is None


def test_an_empty_folder_where_a_query_kept_its_progress_is_refused(tmp_path):
    asked = []
    state = checkpoint.inspect(str(tmp_path / "ck"))
    refused = checkpoint.refusal(state, False, "fraudlab", lambda key: asked.append(key) or STAMP)
    assert asked == [str(tmp_path / "ck")]
    assert refused.startswith(f"checkpoint {tmp_path / 'ck'} is empty, but query {QUERY_ID} kept its progress")
    assert "keyspace fraudlab from topic transactions (last started 2026-12-08 01:02:03 UTC)" in refused
    assert "--new-checkpoint" in refused and "\n" not in refused


def test_a_new_folder_the_keyspace_never_saw_starts(tmp_path):
    state = checkpoint.inspect(str(tmp_path / "ck"))
    assert checkpoint.refusal(state, False, "fraudlab", lambda key: None) is None


def test_new_checkpoint_starts_over_in_an_empty_folder_without_asking_the_keyspace(tmp_path):
    def never(key):
        raise AssertionError("the stamp is not read when a new start is asked for")

    assert checkpoint.refusal(checkpoint.inspect(str(tmp_path / "ck")), True, "fraudlab", never) is None


def test_new_checkpoint_is_refused_on_a_folder_that_would_resume(tmp_path):
    state = checkpoint.inspect(str(spark_checkpoint(tmp_path / "ck")))
    assert checkpoint.refusal(state, False, "fraudlab", lambda key: STAMP) is None  # resumes
    refused = checkpoint.refusal(state, True, "fraudlab", lambda key: STAMP)
    assert refused.startswith("--new-checkpoint: checkpoint") and QUERY_ID in refused
