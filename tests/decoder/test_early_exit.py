"""Early exit (decoder/early_exit.py) and the repetition probe (decoder/probe.py)."""

import pytest
import torch

from spacy_cmllm.decoder.early_exit import exit_after, exit_layer, resolve_states
from spacy_cmllm.decoder.probe import last_copy_dependence
from spacy_cmllm.decoder.unmask import unmask_layers
from tests.tiny import tiny_decoder


def test_resolve_states_and_exit_layer():
    assert resolve_states([-1, 0, 2], 4) == [4, 0, 2]
    assert exit_layer([1, -3], 4) == 2
    with pytest.raises(ValueError, match="E040"):
        resolve_states([5], 4)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", ["0000", "0110"])
def test_exit_after_gives_the_full_models_hidden_state(family, attn, spec):
    model = tiny_decoder(family, n_layers=4, attn=attn)
    unmask_layers(model, spec)
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        full = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        for n in (1, 2, 3):
            with exit_after(model, n):
                out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            torch.testing.assert_close(out.last_hidden_state[mask.bool()], full[n][mask.bool()], atol=1e-6, rtol=0)
            assert len(out.hidden_states) == n + 1
        with exit_after(model, 4):
            last = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(last, full[4])


def test_exit_after_puts_the_layers_back_when_the_call_fails():
    model = tiny_decoder("llama", n_layers=4)
    layers, norm = model.model.layers, model.model.norm
    with pytest.raises(RuntimeError):
        with exit_after(model, 2):
            assert len(model.model.layers) == 2
            raise RuntimeError("boom")
    assert model.model.layers is layers and model.model.norm is norm
    with pytest.raises(ValueError, match="E040"):
        with exit_after(model, 5):
            pass


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_last_copy_dependence(family):
    model = tiny_decoder(family, n_layers=2)
    one = last_copy_dependence(model, repeat=1, seq_len=5)
    # Causal, one copy: token i depends on tokens j <= i only.
    assert one == [[j <= i for j in range(5)] for i in range(5)]
    assert all(all(row) for row in last_copy_dependence(model, repeat=2, seq_len=5))
    # Unmasked, one copy is enough.
    unmask_layers(model, "01")
    assert all(all(row) for row in last_copy_dependence(model, repeat=1, seq_len=5))
