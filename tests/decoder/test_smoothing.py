import pytest
import torch

from spacy_cmllm.decoder.layout import decoder_layers
from spacy_cmllm.decoder.quantize import int8_copy
from spacy_cmllm.decoder.smoothing import smooth_for_int8
from tests.tiny import FAMILIES


def _hidden(model, ids):
    with torch.no_grad():
        return model.model(input_ids=ids, use_cache=False).last_hidden_state


def _plant_outliers(model, *, channels=4, factor=40.0):
    """A few hidden channels tens of times larger than the rest, as trained LLMs have them."""
    with torch.no_grad():
        for layer in decoder_layers(model):
            layer.input_layernorm.weight[:channels] *= factor
            layer.post_attention_layernorm.weight[:channels] *= factor


def _relative(got, want):
    return float((got - want).norm() / want.norm())


# Groups per layer: norm -> q/k/v, norm -> gate/up, v -> o, up -> down. Gemma-2's norms
# multiply by (1 + weight) and Phi-3 fuses its projections: those groups stay as they are.
SMOOTHED_PER_LAYER = {"llama": 4, "mistral": 4, "qwen2": 4, "gemma2": 2, "phi3": 0}


@pytest.mark.parametrize("family", FAMILIES)
def test_smoothing_keeps_the_float_model(make_decoder, family):
    model = make_decoder(family, n_layers=2)
    ids = torch.randint(1, 128, (2, 11))
    want = _hidden(model, ids)
    count = smooth_for_int8(model, [torch.randint(1, 128, (1, 40)), torch.randint(1, 128, (1, 7))], alpha=0.5)
    assert count == 2 * SMOOTHED_PER_LAYER[family]
    assert _relative(_hidden(model, ids), want) < 1e-5


def test_smoothing_folds_grouped_value_heads_consistently(make_decoder):
    """4 query heads read 2 value heads: o_proj's columns of one value channel share its factor."""
    model = make_decoder("llama", n_layers=1)
    attn = decoder_layers(model)[0].self_attn
    q_before, v_before, o_before = (attn.q_proj.weight.clone(), attn.v_proj.weight.clone(), attn.o_proj.weight.clone())
    smooth_for_int8(model, [torch.randint(1, 128, (1, 40)), torch.randint(1, 128, (1, 7))], alpha=0.5)
    # v_proj's columns carry the input norm's factors (as q_proj's do), its rows 1 / value factors.
    input_factor = (attn.q_proj.weight / q_before)[0, 0]
    row_factors = input_factor / (attn.v_proj.weight / v_before)[:, 0]
    column_factors = (attn.o_proj.weight / o_before)[0]
    head_dim, groups = attn.head_dim, attn.num_key_value_groups
    expanded = row_factors.reshape(-1, 1, head_dim).expand(-1, groups, head_dim).reshape(-1)
    torch.testing.assert_close(column_factors, expanded, rtol=1e-4, atol=0)
    assert not torch.allclose(row_factors, torch.ones_like(row_factors))


# 7-bit weights (what a CPU without VNNI gets) take in the outliers smoothing moves into
# them at half the resolution of 8-bit ones, so smoothing cuts less of the error there.
@pytest.mark.parametrize("levels,most", [(127, 0.7), (63, 0.9)], ids=["8-bit", "7-bit"])
@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_smoothing_cuts_int8_error_on_outlier_channels(make_decoder, monkeypatch, family, levels, most):
    from spacy_cmllm.decoder import quantize

    kernel = next((k for k in quantize.KERNEL_PREFERENCE if k.weight_levels == levels and quantize.is_exact(k)), None)
    if kernel is None:
        pytest.skip(f"no int8 kernel of this CPU is exact with weights of ±{levels}")
    monkeypatch.setattr(quantize, "int8_kernel", lambda: kernel)
    model = make_decoder(family, n_layers=4, hidden_size=128)
    _plant_outliers(model)
    ids = torch.randint(1, 128, (2, 16))
    want = _hidden(model, ids)
    calibration = [torch.randint(1, 128, (1, 64))]
    plain = int8_copy(model, unmask="0011", calibration=calibration, smoothing=0.0)
    smoothed = int8_copy(model, unmask="0011", calibration=calibration, smoothing=0.5)
    plain_error = _relative(_hidden(plain, ids), _hidden_unmasked(model, ids))
    smoothed_error = _relative(_hidden(smoothed, ids), _hidden_unmasked(model, ids))
    assert smoothed_error < most * plain_error
    # The float original is untouched.
    torch.testing.assert_close(_hidden(model, ids), want, atol=0, rtol=0)


def _hidden_unmasked(model, ids):
    from spacy_cmllm.decoder.unmask import unmask_layers

    handle = unmask_layers(model, "0011")
    try:
        return _hidden(model, ids)
    finally:
        handle.remove()


def test_smoothing_rejects_alpha_outside_0_1(make_decoder):
    model = make_decoder("llama", n_layers=1)
    with pytest.raises(ValueError, match="E080"):
        smooth_for_int8(model, [torch.randint(1, 128, (1, 8))], alpha=1.5)
