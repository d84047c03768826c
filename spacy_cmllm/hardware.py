"""The CPU's kind, as the pipeline decides its precision by it and results record it."""

import os
import platform
from pathlib import Path
from typing import Any

# Environment variables that hold PyTorch's, oneDNN's and MKL's kernels below what the
# hardware has (set to emulate an older CPU).
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
NATIVE_BF16 = ("AMX", "AVX512-BF16")


def cpu_capability() -> str:
    """The CPU's fastest bf16 path, which decides how fast a CPU run is: AMX, AVX512-BF16,
    AVX512 or AVX2 (the last two without native bf16, so float32 is used).

    Unlike ATen's ``get_cpu_capability`` (which says AVX512 for all three of the first), this
    tells apart the CPUs on which bf16, and int8 through oneDNN, run several times faster."""
    import torch

    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return "AVX512" if torch.cpu._is_avx512_supported() else "AVX2"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_record() -> dict[str, Any]:
    """What a benchmark result records of the CPU it was timed on."""
    import torch

    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_capability(),
        "isa_limits": {name: os.environ[name] for name in ISA_LIMITS if name in os.environ},
        "threads": torch.get_num_threads(),
    }
