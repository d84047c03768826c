import pytest
import torch

from spacy_cmllm.decoder.lora import (
    LoraSettings,
    adapter_state,
    add_lora,
    block_linear_names,
    load_adapter_state,
    trainable_parameters,
)
from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.decoder.unmask import unmask_layers
from spacy_cmllm.errors import CmllmError


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
        (dict(target_modules=["q_proj", ""]), "target_modules"),
    ],
)
def test_bad_settings(kwargs, key):
    with pytest.raises(ValueError, match=f"E020.*{key}="):
        LoraSettings(**kwargs)


def test_unknown_target_module_lists_what_the_model_has(make_decoder):
    with pytest.raises(
        CmllmError,
        match=r"E021.*\['query_key_value'\].*\['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'\]",
    ):
        add_lora(make_decoder("llama"), target_modules=["q_proj", "query_key_value"])


def test_phi3_fused_projections_need_their_own_names(make_decoder):
    phi3 = make_decoder("phi3", n_layers=2)
    with pytest.raises(
        CmllmError, match=r"E021.*\['q_proj', 'v_proj'\].*\['down_proj', 'gate_up_proj', 'o_proj', 'qkv_proj'\]"
    ):
        add_lora(phi3, target_modules=["q_proj", "v_proj"])
    wrapped = add_lora(phi3, r=2, target_modules=["qkv_proj"])
    assert {n.split(".")[-4] for n in trainable_parameters(wrapped)} == {"qkv_proj"}


@pytest.mark.parametrize(
    "family, expected",
    [
        ("llama", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("qwen2", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("gemma2", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("phi3", {"qkv_proj", "o_proj"}),
    ],
)
def test_attention_targets_follow_the_family(make_decoder, family, expected):
    assert LoraSettings(target_modules="attention").to_dict()["target_modules"] == "attention"
    wrapped = add_lora(make_decoder(family, n_layers=2), r=2, target_modules="attention")
    assert {n.split(".")[-4] for n in trainable_parameters(wrapped)} == expected


def test_a_target_set_no_alternative_fits(make_decoder, monkeypatch):
    from spacy_cmllm.decoder import lora

    monkeypatch.setitem(lora.TARGET_SETS, "attention", (("query", "value"),))
    with pytest.raises(CmllmError, match=r"E022.*'attention'.*\['query', 'value'\]"):
        add_lora(make_decoder("llama", n_layers=2), target_modules="attention")


@pytest.mark.parametrize(
    "family, expected",
    [
        ("llama", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
        ("mistral", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
        ("phi3", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    ],
)
def test_all_linear_targets_add_the_mlp(make_decoder, family, expected):
    model = make_decoder(family, n_layers=2)
    linear = set(block_linear_names(model))
    adapted = {n.split(".")[-4] for n in trainable_parameters(add_lora(model, r=2, target_modules="all-linear"))}
    # Every linear module of the blocks, in the family's names.
    assert adapted == expected == linear
