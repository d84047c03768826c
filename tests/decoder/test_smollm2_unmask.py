"""The method on the real SmolLM2-135M (30 layers: groups of 8, 8, 7, 7)."""

import copy

import pytest
import torch

from spacy_cmllm import add_lora, bidirectional_layers, unmask_layers

pytestmark = pytest.mark.smollm2


def next_word(model, tokenizer, text):
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return tokenizer.decode([int(logits[0, -1].argmax())])


def test_0011_measured_on_smollm2_also_with_lora(smollm2):
    model, tokenizer = smollm2
    model = copy.deepcopy(model)
    handle = unmask_layers(model, "0011")
    assert handle.layers == tuple(range(16, 30))
    assert bidirectional_layers(model) == [False] * 16 + [True] * 14
    wrapped = add_lora(model, r=8, target_modules=["q_proj", "v_proj"])
    assert bidirectional_layers(wrapped) == [False] * 16 + [True] * 14
    handle.remove()
    assert bidirectional_layers(wrapped) == [False] * 30
    # The stock model is back: LoRA B starts at zero, so the adapters change nothing yet.
    assert next_word(wrapped, tokenizer, "The capital of France is") == " Paris"


def test_unmasked_smollm2_padding_does_not_leak(smollm2):
    model, tokenizer = smollm2
    model = copy.deepcopy(model)
    unmask_layers(model, "0011")
    batch = tokenizer(["The capital of France is Paris.", "Hello"], return_tensors="pt", padding=True)
    with torch.no_grad():
        padded = model.model(**batch).last_hidden_state
        alone = model.model(input_ids=batch.input_ids[1:, : int(batch.attention_mask[1].sum())]).last_hidden_state
    n = alone.shape[1]
    torch.testing.assert_close(padded[1, :n], alone[0], atol=1e-4, rtol=1e-4)


def test_load_time_check_passes_on_smollm2_with_lora(smollm2):
    from spacy_cmllm.decoder.probe import check_unmasked

    model, _ = smollm2
    model = add_lora(copy.deepcopy(model), r=8, target_modules=["q_proj", "v_proj"])
    unmask_layers(model, "0011")
    model.train()
    rng = torch.get_rng_state()
    check_unmasked(model, range(16, 30), spec="0011")
    assert torch.equal(torch.get_rng_state(), rng) and model.training
