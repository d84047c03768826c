"""Qwen2, Gemma-2 and Phi-3 beside Llama and Mistral: unmasking measured, not trusted.

Gemma-2 alternates sliding-window and global layers and soft-caps attention scores, which
only the eager kernel applies (SDPA silently drops the cap), so unmasking Gemma-2 is refused
on SDPA (E023) and checked on eager.
"""

import pytest
import torch

from spacy_cmllm import bidirectional_layers, unmask_layers
from spacy_cmllm.errors import CmllmError
from tests.decoder.test_unmask import ids_and_mask, layer_response

NEW_FAMILIES = ["qwen2", "gemma2", "phi3"]


def runs(family, attn):
    return not (family == "gemma2" and attn == "sdpa")


@pytest.mark.parametrize("family", NEW_FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", ["0011", "1000", [1, 6]])
def test_measured_pattern_matches_request(make_decoder, family, attn, spec):
    model = make_decoder(family, n_layers=8, attn=attn)
    assert bidirectional_layers(model) == [False] * 8
    if not runs(family, attn):
        with pytest.raises(CmllmError, match=r"E023.*Gemma2Model.*attn_implementation='eager'"):
            unmask_layers(model, spec)
        return
    handle = unmask_layers(model, spec)
    assert bidirectional_layers(model) == [i in handle.layers for i in range(8)]
    handle.remove()
    assert bidirectional_layers(model) == [False] * 8


@pytest.mark.parametrize("family, attn", [(f, a) for f in NEW_FAMILIES for a in ("sdpa", "eager") if runs(f, a)])
def test_masked_layers_bit_identical_and_padding_does_not_leak(make_decoder, family, attn):
    stock, model = make_decoder(family, attn=attn), make_decoder(family, attn=attn)
    unmask_layers(model, "0011")
    lengths = [11, 4, 7]
    ids, mask = ids_and_mask(lengths)
    with torch.no_grad():
        want = stock.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for i in range(5):  # the inputs of layers 0..4: layers 0..3 are untouched
            assert torch.equal(want[i], got[i]), i
        batch = got[-1]
        for row, n in enumerate(lengths):
            alone = model.model(input_ids=ids[row : row + 1, :n]).last_hidden_state
            torch.testing.assert_close(batch[row, :n], alone[0], atol=2e-5, rtol=1e-4)


def test_gemma2_sliding_layers_and_softcap(make_decoder):
    model = make_decoder("gemma2", attn="eager", sliding_window=4)
    assert model.config.layer_types[:2] == ["sliding_attention", "full_attention"]
    unmask_layers(model, "0001")  # layers 6 (sliding) and 7 (global)
    moved = layer_response(model, 0, position=0)
    assert moved[:4] == [True] * 4 and not any(moved[4:])  # masked sliding layer: window kept
    assert all(layer_response(model, 6, position=11))  # unmasked: every token sees every token
    assert all(layer_response(model, 7, position=11))
    # The cap is applied in unmasked layers: a tighter cap changes their output.
    ids = torch.randint(1, 128, (1, 9))
    with torch.no_grad():
        capped = model.model(input_ids=ids).last_hidden_state
        for layer in model.model.layers:
            layer.self_attn.attn_logit_softcapping = 0.01
        tighter = model.model(input_ids=ids).last_hidden_state
    assert not torch.allclose(capped, tighter)
    # Switching the kernel after unmasking is caught at the next forward.
    model.config._attn_implementation = "sdpa"
    with pytest.raises(CmllmError, match="E023"):
        model.model(input_ids=ids)
