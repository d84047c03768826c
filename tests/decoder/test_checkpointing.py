"""Unmasked layers under gradient checkpointing: each layer's re-run in backward must use
the padding of its OWN forward, even after later decoder calls with other batch sizes and
padding (the product makes one decoder call per window batch before one backward)."""

import pytest
import torch

from spacy_cmllm.decoder.lora import add_lora
from spacy_cmllm.decoder.unmask import UNMASKED_KWARG, unmask_layers
from tests.decoder.test_unmask import ids_and_mask

# Different batch sizes and padding per call; the last one has no padding at all, so an
# SDPA layer there gets no mask (the case that used to leak into earlier calls' re-runs).
CALLS = [([9, 5, 7], 1), ([6, 3], 2), ([4, 4, 4, 4], 3), ([8, 2, 8], 4), ([5, 5], 5)]


def gradients(make_decoder, family, attn, *, checkpointing, lora):
    model = make_decoder(family, attn=attn, sliding_window=4 if family == "mistral" else None)
    unmask_layers(model, "0011")
    if lora:
        model = add_lora(model, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
        # peft initialises lora_B to zero, which would make lora_A's gradient zero too.
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    loss = torch.zeros(())
    for lengths, seed in CALLS:
        ids, mask = ids_and_mask(lengths, seed=seed)
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        weights = torch.linspace(0.5, 1.5, out.shape[-1])
        loss = loss + ((out * weights).pow(2).sum(-1) * mask).sum()
    loss.backward()
    # lm_head is not in the loss: it gets no gradient either way.
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("lora", [False, True])
def test_checkpointed_gradients_equal_plain_ones(make_decoder, family, attn, lora):
    plain = gradients(make_decoder, family, attn, checkpointing=False, lora=lora)
    checkpointed = gradients(make_decoder, family, attn, checkpointing=True, lora=lora)
    assert plain.keys() == checkpointed.keys()
    if lora:
        assert plain and all("lora_" in name for name in plain)
    else:
        assert any(".layers.7." in name for name in plain) and any("embed_tokens" in name for name in plain)
    for name, grad in plain.items():
        assert grad.abs().max() > 0, name  # a vacuous comparison would prove nothing
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_layer_called_alone_reads_padding_from_its_mask(make_decoder, family, attn):
    """A layer called outside the base model (without the mask the base model's hook built
    for the call) hides padding too."""
    model = make_decoder(family, attn=attn, sliding_window=4 if family == "mistral" else None)
    unmask_layers(model, "0011")
    layer = model.model.layers[6]
    calls = []
    hook = layer.register_forward_pre_hook(lambda m, a, k: calls.append((a, dict(k))), with_kwargs=True, prepend=True)
    ids, mask = ids_and_mask([9, 5, 7])
    with torch.no_grad():
        model.model(input_ids=ids, attention_mask=mask, use_cache=False)
        hook.remove()
        args, kwargs = calls[0]
        assert isinstance(kwargs[UNMASKED_KWARG], torch.Tensor) and kwargs[UNMASKED_KWARG].dim() == 4
        through_base = layer(*args, **kwargs)[0]
        del kwargs[UNMASKED_KWARG]
        alone = layer(*args, **kwargs)[0]
    torch.testing.assert_close(alone, through_base, atol=0, rtol=0)
