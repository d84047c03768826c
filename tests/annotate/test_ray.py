"""The same jobs on a local Ray instance (2 CPUs): same files as a local run, nothing lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy

from spacy_cmllm.annotate import AnnotateJob, run_local, run_ray
from tests.annotate.conftest import make_rows, read_output
from tests.requirements import require

ray = require("ray")

ROOT = Path(__file__).parents[2]
COMPONENTS = Path(__file__).with_name("components.py")
BAD = (2, 9, 30)


def _files(directory: Path):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_interrupted_ray_job_resumes_without_loss_or_duplicates(tmp_path, pipeline_dir):
    # Runs in its own process (and its own Ray instance) before this module starts one.
    import tests.annotate.components  # noqa: F401

    n = 120
    (tmp_path / "in.jsonl").write_bytes(make_rows(n, bad=BAD))
    # The stop is triggered by the work done, not by a clock: after 8 documents in one actor
    # a marker file appears and every actor is held at its next document, so the shards
    # written at the stop are the same however loaded the machine is.
    marker, release = tmp_path / "stopped", tmp_path / "release"
    nlp = spacy.load(pipeline_dir)
    nlp.add_pipe("stop_after", config={"docs": 8, "marker": str(marker), "release": str(release)})
    nlp.to_disk(tmp_path / "stopper")
    command = [
        sys.executable,
        "-m",
        "spacy_cmllm",
        "annotate",
        str(tmp_path / "in.jsonl"),
        str(tmp_path / "out"),
        "--model",
        str(tmp_path / "stopper"),
        "--shard-size",
        "2",
        "--ray",
        "--num-actors",
        "2",
        "--code",
        str(COMPONENTS),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    # A background CI job may run with SIGINT ignored, which children inherit: restore the default.
    process = subprocess.Popen(command, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600  # only a guard against a hang: Ray start-up is slow on a loaded machine
    while process.poll() is None and not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"the job never reached its 9th document (exit status {process.poll()})"
    process.send_signal(signal.SIGINT)  # Ctrl-C: the driver stops and shuts its Ray instance down
    assert process.wait(timeout=300) != 0
    receipts = tmp_path / "out" / "_receipts"
    done_at_stop = len(list(receipts.glob("*.json")))
    assert 4 <= done_at_stop < n // 2, f"the stop must land mid-job ({done_at_stop} of {n // 2} shards done)"

    release.touch()
    assert subprocess.run(command, env=env, timeout=600).returncode == 0
    rows, rejects = read_output(tmp_path / "out")
    assert sorted([r["_row"] for r in rows] + [r["_row"] for r in rejects]) == list(range(n))
    assert [r["_row"] for r in rejects] == list(BAD)
    # The same files as an uninterrupted run of the same job.
    reference = AnnotateJob(
        str(tmp_path / "in.jsonl"),
        str(tmp_path / "reference"),
        str(tmp_path / "stopper"),
        shard_size=2,
        code=str(COMPONENTS),
    )
    run_local(reference, progress=False)
    assert _files(tmp_path / "out") == _files(tmp_path / "reference")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_writes_the_same_files_as_a_local_run(tmp_path, pipeline_dir, local_ray):
    (tmp_path / "in.jsonl").write_bytes(make_rows(60, bad=BAD))
    local = AnnotateJob(str(tmp_path / "in.jsonl"), str(tmp_path / "local"), str(pipeline_dir), shard_size=7)
    on_ray = AnnotateJob(local.input, str(tmp_path / "ray"), local.model, shard_size=7)
    assert run_local(local, progress=False) == run_ray(on_ray, num_actors=2, progress=False)
    assert _files(tmp_path / "local") == _files(tmp_path / "ray")
    rows, rejects = read_output(tmp_path / "ray")
    assert len(rows) == 57 and [r["_row"] for r in rejects] == list(BAD)


@pytest.mark.slow
def test_a_worker_that_dies_is_retried(tmp_path, pipeline_dir, local_ray):
    import tests.annotate.components  # noqa: F401  (registers the factories here too)

    nlp = spacy.load(pipeline_dir)
    marker = tmp_path / "crashed"
    nlp.add_pipe("crash_once", config={"marker": str(marker)})
    nlp.to_disk(tmp_path / "crashy")
    lines = make_rows(30).splitlines(keepends=True)
    lines[17] = b'{"id": "doc-17", "text": "CRASH in the middle of shard 3 ."}\n'
    (tmp_path / "in.jsonl").write_bytes(b"".join(lines))
    job = AnnotateJob(
        str(tmp_path / "in.jsonl"), str(tmp_path / "ray"), str(tmp_path / "crashy"), shard_size=5, code=str(COMPONENTS)
    )
    result = run_ray(job, num_actors=2, progress=False)
    assert marker.exists(), "the worker did not crash, so nothing was retried"
    assert result == {"rows": 30, "written": 30, "rejected": 0, "shards": 6, "shards_skipped": 0}
    reference = AnnotateJob(job.input, str(tmp_path / "local"), str(pipeline_dir), shard_size=5)
    run_local(reference, progress=False)
    assert read_output(tmp_path / "ray") == read_output(tmp_path / "local")
