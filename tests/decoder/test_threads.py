"""Torch threads in nlp.pipe(n_process=N) workers (spacy_cmllm/decoder/threads.py)."""

import multiprocessing
import warnings

import pytest
import torch

from spacy_cmllm.decoder import threads
from spacy_cmllm.decoder.threads import WORKER_THREADS_ENV, settle_worker_threads, worker_threads


def test_one_thread_per_worker_unless_asked(monkeypatch):
    monkeypatch.delenv(WORKER_THREADS_ENV, raising=False)
    assert worker_threads(forked=False) == 1
    assert worker_threads(forked=True) == 1
    monkeypatch.setenv(WORKER_THREADS_ENV, " 3 ")
    assert worker_threads(forked=False) == 3


def test_forked_worker_stays_on_one_thread_and_says_why(monkeypatch):
    monkeypatch.setenv(WORKER_THREADS_ENV, "2")
    with pytest.warns(UserWarning, match="W100"):
        assert worker_threads(forked=True) == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_count_is_explained(monkeypatch, value):
    monkeypatch.setenv(WORKER_THREADS_ENV, value)
    with pytest.raises(ValueError, match="E100"):
        worker_threads(forked=False)


def test_the_users_process_is_left_alone(monkeypatch):
    monkeypatch.setattr(threads, "_settled_pid", None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            settle_worker_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _report_threads(connection):
    settle_worker_threads()
    connection.send((threads.is_forked(), threads.is_worker(), torch.get_num_threads()))
    connection.close()


def test_forked_worker_settles_on_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        receive, send = multiprocessing.Pipe(duplex=False)
        process = multiprocessing.get_context("fork").Process(target=_report_threads, args=(send,))
        process.start()
        assert receive.poll(60), "the forked worker did not report"
        assert receive.recv() == (True, True, 1)
        process.join(10)
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
