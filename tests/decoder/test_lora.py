import pytest
import torch

from spacy_cmllm.decoder.lora import (
    LoraSettings,
    adapter_state,
    add_lora,
    load_adapter_state,
    trainable_parameters,
)
from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.decoder.unmask import unmask_layers


def test_only_adapters_train_and_get_gradients(make_decoder):
    model = add_lora(make_decoder("llama"), r=4, alpha=8, dropout=0.0)
    names = trainable_parameters(model)
    assert names and all("lora_" in n for n in names)
    model.train()
    ids = torch.randint(1, 128, (2, 6))
    model(input_ids=ids).logits.float().pow(2).mean().backward()
    for name, param in model.named_parameters():
        if "lora_B" in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        elif "lora_" not in name:
            assert param.grad is None, name


@pytest.mark.parametrize("order", ["unmask_then_wrap", "wrap_then_unmask"])
def test_unmasking_holds_with_lora(make_decoder, order):
    model = make_decoder("mistral", sliding_window=3)
    settings = dict(r=2, target_modules=["q_proj", "v_proj"])
    if order == "unmask_then_wrap":
        unmask_layers(model, "0011")
        model = add_lora(model, **settings)
    else:
        model = add_lora(model, **settings)
        unmask_layers(model, "0011")
    assert bidirectional_layers(model) == [False] * 4 + [True] * 4


def test_adapter_state_round_trip(make_decoder):
    model = add_lora(make_decoder("llama"), r=2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    state = adapter_state(model)
    assert state and all(v.dtype == torch.float32 for v in state.values())
    fresh = add_lora(make_decoder("llama"), r=2)
    ids = torch.randint(1, 128, (1, 5))
    with torch.no_grad():
        assert not torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
        load_adapter_state(fresh, state)
        assert torch.equal(fresh(input_ids=ids).logits, model(input_ids=ids).logits)
    partial = dict(list(state.items())[1:])
    with pytest.raises(ValueError, match="E031"):
        load_adapter_state(fresh, partial)


def test_bf16_base_keeps_float32_adapters(make_decoder):
    model = add_lora(make_decoder("llama").to(torch.bfloat16), r=2)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    with torch.no_grad():
        out = model(input_ids=torch.randint(1, 128, (1, 4))).logits
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(r=0), "r"),
        (dict(r=1.5), "r"),
        (dict(alpha=0), "alpha"),
        (dict(dropout=1.0), "dropout"),
        (dict(target_modules=[]), "target_modules"),
        (dict(target_modules="q_proj"), "target_modules"),
    ],
)
def test_bad_settings(kwargs, key):
    with pytest.raises(ValueError, match=f"E020.*{key}="):
        LoraSettings(**kwargs)


def test_unknown_target_module(make_decoder):
    with pytest.raises(ValueError, match="E020.*query_key_value"):
        add_lora(make_decoder("llama"), target_modules=["query_key_value"])
