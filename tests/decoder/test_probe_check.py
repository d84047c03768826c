"""check_unmasked: the cheap probe that runs at nlp.initialize and spacy.load."""

import pytest
import torch

from spacy_cmllm.decoder.lora import add_lora
from spacy_cmllm.decoder.probe import check_unmasked
from spacy_cmllm.decoder.unmask import parse_spec, unmask_layers


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_passes_when_the_pattern_is_as_configured(make_decoder, family, attn):
    model = make_decoder(family, attn=attn, sliding_window=4 if family == "mistral" else None)
    unmask_layers(model, "0101")
    check_unmasked(model, parse_spec("0101", 8), spec="0101")
    check_unmasked(make_decoder(family, attn=attn), (), spec="0000")


def test_names_a_layer_that_stayed_causal(make_decoder):
    model = make_decoder("llama")
    unmask_layers(model, [4, 5, 7])  # 6 "silently" left causal
    with pytest.raises(ValueError, match=r"E036.*'0011'.*\[4, 5, 6, 7\].*\[4, 5, 7\].*\[6\] stayed causal"):
        check_unmasked(model, parse_spec("0011", 8), spec="0011")


def test_names_a_layer_unmasked_by_mistake(make_decoder):
    model = make_decoder("llama")
    unmask_layers(model, [0])
    with pytest.raises(ValueError, match=r"E036.*layers \[0\] attend to the right"):
        check_unmasked(model, (), spec="0000")


def test_changes_no_weights_flags_or_global_rng(make_decoder):
    model = add_lora(make_decoder("llama"), r=4, dropout=0.1, target_modules=["q_proj", "v_proj"])
    unmask_layers(model, "0011")
    model.train()
    model.base_model.model.model.layers[2].eval()  # a submodule set apart stays apart
    flags = {name: m.training for name, m in model.named_modules()}
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    check_unmasked(model, parse_spec("0011", 8), spec="0011")
    assert torch.equal(torch.get_rng_state(), rng)
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
