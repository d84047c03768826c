import json

import pytest

from spacy_cmllm.annotate.inputs import Shard
from spacy_cmllm.annotate.outputs import ShardStore

MANIFEST = {
    "input_sha256": "abc",
    "input_bytes": 10,
    "model": "m",
    "text_field": "text",
    "keep_fields": None,
    "shard_size": 2,
    "format": "jsonl",
}


def test_resuming_a_different_job_is_refused(tmp_path):
    ShardStore(tmp_path / "out", "jsonl").open(MANIFEST)
    ShardStore(tmp_path / "out", "jsonl").open(MANIFEST)  # the same job resumes
    with pytest.raises(ValueError, match="E051.*model"):
        ShardStore(tmp_path / "out", "jsonl").open({**MANIFEST, "model": "other"})


def test_receipt_written_last_and_a_redo_overwrites(tmp_path):
    store = ShardStore(tmp_path / "out", "jsonl")
    store.open(MANIFEST)
    shard = Shard(0, 0, 2)
    assert not store.is_done(0)
    store.write(shard, [{"_row": 0}], [{"_row": 1, "reason": "x", "raw": ""}])
    assert store.is_done(0)
    # A redo (e.g. after a crash before the receipt) replaces the files, never appends.
    store.write(shard, [{"_row": 0}, {"_row": 1}], [])
    assert store.part_path(0).read_text().count("\n") == 2
    assert not store.rejects_path(0).exists()
    assert json.loads(store.receipt_path(0).read_text()) == {"shard": 0, "rows": 2, "written": 2, "rejected": 0}


def test_counts_must_add_up(tmp_path):
    store = ShardStore(tmp_path / "out", "jsonl")
    store.open(MANIFEST)
    with pytest.raises(RuntimeError, match="E053"):
        store.write(Shard(0, 0, 3), [{"_row": 0}], [])
    store.write(Shard(0, 0, 2), [{"_row": 0}, {"_row": 1}], [])
    with pytest.raises(RuntimeError, match=r"E053.*Shards \[1\]"):
        store.check_complete([Shard(0, 0, 2), Shard(1, 2, 4)])
    assert store.check_complete([Shard(0, 0, 2)]) == (2, 0)


def test_stale_temporary_files_are_removed(tmp_path):
    store = ShardStore(tmp_path / "out", "jsonl")
    store.open(MANIFEST)
    stale = tmp_path / "out" / "part-00000.jsonl.tmp"
    stale.write_text("half a shard")
    store.open(MANIFEST)
    assert not stale.exists()


def test_output_must_be_new_empty_or_this_jobs(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="E040.*not a directory"):
        ShardStore(tmp_path / "file", "jsonl").open(MANIFEST)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("someone else's")
    with pytest.raises(ValueError, match="E040.*other files"):
        ShardStore(tmp_path / "busy", "jsonl").open(MANIFEST)
    (tmp_path / "empty").mkdir()
    ShardStore(tmp_path / "empty", "jsonl").open(MANIFEST)
