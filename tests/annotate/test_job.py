import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy

from spacy_cmllm.annotate import AnnotateJob, run_local
from tests.annotate.conftest import make_rows, read_output
from tests.requirements import require

BAD = (3, 17, 18, 40)


def _job(tmp_path, pipeline_dir, n=45, shard_size=8, **kwargs):
    path = tmp_path / "in.jsonl"
    if not path.exists():
        path.write_bytes(make_rows(n, bad=BAD))
    return AnnotateJob(str(path), str(tmp_path / "out"), str(pipeline_dir), shard_size=shard_size, **kwargs)


def _assert_exactly_once(directory, n):
    rows, rejects = read_output(directory)
    seen = [r["_row"] for r in rows] + [r["_row"] for r in rejects]
    assert sorted(seen) == list(range(n)), "a row is missing or written twice"
    return rows, rejects


def test_every_row_annotated_once_as_nlp_would(tmp_path, pipeline_dir):
    result = run_local(_job(tmp_path, pipeline_dir), progress=False)
    assert result == {"rows": 45, "written": 41, "rejected": 4, "shards": 6, "shards_skipped": 0}
    rows, rejects = _assert_exactly_once(tmp_path / "out", 45)
    assert [r["_row"] for r in rejects] == list(BAD)
    nlp = spacy.load(pipeline_dir)
    for row in rows:
        doc = nlp(row["text"])
        assert row["id"] == f"doc-{row['_row']}" and row["source"] == row["_row"] % 3
        assert row["tokens"] == [t.text for t in doc]
        assert row["tags"] == [t.tag_ for t in doc] and all(row["tags"])
        assert row["entities"] == [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]
        for ent in row["entities"]:
            assert 0 <= ent["start"] < ent["end"] <= len(row["text"])


def test_a_finished_job_is_not_redone(tmp_path, pipeline_dir):
    run_local(_job(tmp_path, pipeline_dir), progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    result = run_local(_job(tmp_path, pipeline_dir), progress=False)
    assert result["shards_skipped"] == result["shards"] == 6
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before


def test_a_shard_cut_off_before_its_receipt_is_redone_not_duplicated(tmp_path, pipeline_dir):
    run_local(_job(tmp_path, pipeline_dir), progress=False)
    reference = read_output(tmp_path / "out")
    out = tmp_path / "out"
    # The state a kill leaves behind: shard 2's part written, its receipt not; a half-written temp file.
    (out / "_receipts" / "00002.json").unlink()
    (out / "part-00003.jsonl.tmp").write_text('{"half": ')
    result = run_local(_job(tmp_path, pipeline_dir), progress=False)
    assert result["shards_skipped"] == 5
    assert read_output(out) == reference
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_killed_process_resumes_without_loss_or_duplicates(tmp_path, pipeline_dir):
    n = 120
    job = _job(tmp_path, pipeline_dir, n=n, shard_size=2)
    command = [
        sys.executable,
        "-m",
        "spacy_cmllm",
        "annotate",
        job.input,
        job.output,
        "--model",
        job.model,
        "--shard-size",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, env=env)
    receipts = Path(job.output) / "_receipts"
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        if receipts.exists() and len(list(receipts.glob("*.json"))) >= 5:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = len(list(receipts.glob("*.json")))
    assert 0 < done_at_kill < n // 2, "the kill must land mid-job for this test to mean anything"
    assert subprocess.run(command, env=env).returncode == 0
    rows, rejects = _assert_exactly_once(Path(job.output), n)
    assert len(rejects) == len(BAD)
    # Same files as a run that was never interrupted.
    run_local(AnnotateJob(job.input, str(tmp_path / "clean"), job.model, shard_size=2), progress=False)
    assert read_output(tmp_path / "clean") == (rows, rejects)


def test_parquet_in_and_out(tmp_path, pipeline_dir):
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    texts = ["Mary visited Paris .", None, "John works for Google .", "", "Acme Corp"]
    pq.write_table(pa.table({"doc_id": [10, 11, 12, 13, 14], "text": texts}), tmp_path / "in.parquet", row_group_size=2)
    job = AnnotateJob(str(tmp_path / "in.parquet"), str(tmp_path / "out"), str(pipeline_dir), shard_size=2)
    assert run_local(job, progress=False) == {"rows": 5, "written": 4, "rejected": 1, "shards": 3, "shards_skipped": 0}
    table = pq.read_table(tmp_path / "out")  # the directory reads as one dataset
    assert table.column_names == ["doc_id", "_row", "text", "tokens", "tags", "entities"]
    assert table.column("doc_id").to_pylist() == [10, 12, 13, 14]
    assert table.column("text").to_pylist() == [t for t in texts if t is not None]
    jsonl = AnnotateJob(job.input, str(tmp_path / "as-jsonl"), job.model, shard_size=2, format="jsonl")
    run_local(jsonl, progress=False)
    rows, _ = read_output(tmp_path / "as-jsonl")
    assert [r["tokens"] for r in rows] == table.column("tokens").to_pylist()


def test_invalid_settings(tmp_path, pipeline_dir):
    with pytest.raises(ValueError, match="E040.*shard_size"):
        _job(tmp_path, pipeline_dir, shard_size=0)
    with pytest.raises(ValueError, match="E050"):
        AnnotateJob(str(tmp_path / "in.txt"), str(tmp_path / "out"), str(pipeline_dir))
