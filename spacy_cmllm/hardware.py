"""The CPU's kind, as results record it beside their timings."""


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
