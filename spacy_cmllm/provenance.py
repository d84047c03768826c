"""Where a measurement came from: the code, the packages and the machine.

Every benchmark writes ``provenance()`` into its results, so that a number in the docs can
be traced to the commit that produced it and to the kind of CPU or GPU it was timed on
(speed and int8 results differ several-fold between AVX2, AVX512-BF16 and AMX CPUs).
"""

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .hardware import cpu_record

# The packages whose versions change what a benchmark measures.
PACKAGES = (
    "spacy-cmllm",
    "spacy",
    "spacy-transformers",
    "thinc",
    "torch",
    "transformers",
    "peft",
    "numpy",
)
ROOT = Path(__file__).resolve().parents[1]


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions; None for a package that is not installed."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


# Where the committed measurements live, relative to the repository root.
RESULTS = "benchmarks/results"


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    """The checked-out commit and whether tracked files other than results differ from it.

    Results files are left out of "dirty": a sweep appends rows to a committed CSV while it
    runs, and that does not change the code that made the next row. Both are None outside a git checkout (an installed wheel), so a result never claims a
    commit it cannot know."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS}") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_record(device: str | None = None) -> dict[str, Any]:
    """The CPU (its capability decides bf16 and int8 speed) and, on CUDA, the GPU."""
    import torch

    record: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        **cpu_record(),
        "device": device or "cpu",
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            compute_capability=f"{props.major}.{props.minor}",
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            torch_cuda=torch.version.cuda,
        )
    return record


def provenance(*, device: str | None = None, packages: Iterable[str] = PACKAGES) -> dict[str, Any]:
    """The fields every benchmark result starts with: commit, dirty, versions, machine and
    the UTC time it was recorded."""
    return {
        **git_commit(),
        "versions": package_versions(packages),
        "machine": machine_record(device),
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
