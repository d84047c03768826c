"""Clocks for timings that compare: synchronised with the device, and interleaved, so that
a machine whose speed drifts between minutes slows every contender alike."""

import time
from collections.abc import Callable
from typing import Any

import torch


def no_sync() -> None:
    """On a CPU the work has finished when the call returns."""


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What to call before each clock read: on a GPU, the work queued so far must have finished."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else no_sync


def timed(fn: Callable[[], Any], sync: Callable[[], None] = no_sync) -> float:
    """Seconds of one call of ``fn``."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def best_of(repeats: int, fn: Callable[[], Any], sync: Callable[[], None] = no_sync) -> float:
    """The fastest of ``repeats`` calls."""
    return min(timed(fn, sync) for _ in range(repeats))


def interleaved(
    repeats: int,
    *fns: Callable[[], Any],
    sync: Callable[[], None] = no_sync,
    summary: Callable[[list[float]], float] = min,
) -> list[float]:
    """Each function's ``summary`` (the fastest, or e.g. statistics.median) of ``repeats``
    calls, the functions called in turn."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            bucket.append(timed(fn, sync))
    return [summary(bucket) for bucket in times]
