"""nlp.pipe(n_process=2) under fork and spawn: the same Docs as one process, one torch thread
per worker (or SPACY_CMLLM_WORKER_THREADS under spawn), the parent's threads untouched.

Each run is a child process with a timeout: under fork, a worker that inherits the parent's
multi-threaded OpenMP pool hangs, and that must fail the test, not block the session."""

import json
import os
import subprocess
import sys

import pytest

from spacy_cmllm.decoder.threads import WORKER_THREADS_ENV
from tests.processes import run_process_tree
from tests.scripts import ROOT
from tests.tiny import build_pipeline, save_tiny_decoder, train

# Spawned workers import torch, transformers and spaCy afresh: tens of seconds on a busy CPU.
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def saved(tmp_path_factory, byte_level_tokenizer):
    base = save_tiny_decoder(tmp_path_factory.mktemp("base"), byte_level_tokenizer, n_layers=4)
    nlp = build_pipeline(base, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3"})
    train(nlp, steps=3)
    path = tmp_path_factory.mktemp("pipeline") / "nlp"
    nlp.to_disk(path)
    return path


def run_workers(path, method, **env):
    # Not pytest-xdist's OMP_NUM_THREADS=1 (tests/conftest.py): the parent must run on two.
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", WORKER_THREADS_ENV)}
    environ.update(TOKENIZERS_PARALLELISM="false", **env)
    try:
        done = run_process_tree(
            [sys.executable, "-m", "tests.pipeline.pipe_workers", str(path), method],
            timeout=TIMEOUT_S,
            env=environ,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"nlp.pipe(n_process=2) with {method} gave nothing in {TIMEOUT_S} s: the workers hang")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_fork_workers_equal_one_process_on_one_thread(saved):
    result = run_workers(saved, "fork")
    assert result["n_docs"] == 12 and result["has_hidden"]
    assert result["same"]
    # The parent ran on two threads; a forked worker can only run on one.
    assert result["worker_threads"] == [1]
    assert result["parent_threads"] == [2, 2]


@pytest.mark.slow
def test_spawn_workers_equal_one_process_with_the_threads_asked_for(saved):
    result = run_workers(saved, "spawn", **{WORKER_THREADS_ENV: "2"})
    assert result["n_docs"] == 12 and result["has_hidden"]
    assert result["same"]
    assert result["worker_threads"] == [2]
    assert result["parent_threads"] == [2, 2]
