"""Torch threads in the worker processes of ``nlp.pipe(..., n_process=N)``.

spaCy runs every component in N worker processes, and two things go wrong when the
decoder keeps torch's default threads there:

* Under fork (Linux's default before Python 3.14) a worker inherits the parent's GNU
  OpenMP state, which torch's CPU wheels use. Once the parent has run a parallel region
  on several threads (any forward on more than one thread does), the worker's first
  parallel region on more than one thread waits forever for pool threads that a forked
  process does not have. Only one thread is safe there, and it must be set before the
  worker's first forward.
* Under spawn or forkserver (the default on macOS and Windows, and on Linux from Python
  3.14) a worker starts with torch's default of one thread per core, so N workers run N
  times as many threads as there are cores; OpenMP's spinning threads then slow each other
  down far more than N times.

A worker cannot tell how many siblings it has (spaCy passes n_process to none of them),
so every worker computes on one thread, as PyTorch's own DataLoader workers do: n_process
is one process per core. Where fewer workers than cores are wanted, a spawned worker takes
its thread count from ``SPACY_CMLLM_WORKER_THREADS`` (e.g. cores // n_process); a forked
one stays at one thread whatever it says (W100). The process that called ``nlp.pipe`` is
never touched.
"""

import multiprocessing
import os
import warnings

import torch

from ..errors import CmllmError, Errors, Warnings

WORKER_THREADS_ENV = "SPACY_CMLLM_WORKER_THREADS"

# The process this module was imported in. A forked worker inherits the value, so its own
# pid differs; a spawned worker imports the module afresh.
_IMPORT_PID = os.getpid()
# The process whose threads were last settled (a forked worker inherits the parent's value).
_settled_pid: int | None = None


def is_forked() -> bool:
    """True in a process forked after this module was imported (a fork start method's
    worker, or a forkserver's child of a server that imported it)."""
    return os.getpid() != _IMPORT_PID


def is_worker() -> bool:
    """True in a process started by ``multiprocessing`` (fork, spawn or forkserver), such as
    the workers of ``nlp.pipe(..., n_process=N)``, or in a forked copy of this process."""
    return multiprocessing.parent_process() is not None or is_forked()


def worker_threads(*, forked: bool) -> int:
    """The torch thread count for a worker process (see the module's docstring).

    forked: whether the worker inherited the parent's OpenMP state.
    """
    value = os.environ.get(WORKER_THREADS_ENV, "").strip()
    if not value:
        return 1
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise CmllmError(Errors.E100.format(name=WORKER_THREADS_ENV, value=value))
    if forked and threads > 1:
        warnings.warn(Warnings.W100.format(name=WORKER_THREADS_ENV, value=value), stacklevel=3)
        return 1
    return threads


def settle_worker_threads() -> None:
    """Set torch's thread count once per worker process, before its first computation.
    Cheap enough to call before every forward: after the first call in a process it
    compares one pid. Does nothing in the process the user runs."""
    global _settled_pid
    pid = os.getpid()
    if pid == _settled_pid:
        return
    _settled_pid = pid
    if is_worker():
        torch.set_num_threads(worker_threads(forked=is_forked()))
