import pytest
import torch

from spacy_cmllm.hardware import cpu_capability


@pytest.mark.parametrize(
    "amx,bf16,avx512,expected",
    [
        (True, True, True, "AMX"),
        (False, True, True, "AVX512-BF16"),
        (False, False, True, "AVX512"),
        (False, False, False, "AVX2"),
    ],
)
def test_cpu_capability_names_the_fastest_bf16_path(monkeypatch, amx, bf16, avx512, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: avx512)
    assert cpu_capability() == expected
