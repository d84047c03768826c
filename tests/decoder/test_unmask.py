import pytest
import torch

from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.decoder.unmask import group_bounds, parse_spec, unmask_layers


def expected_pattern(n_layers, chosen):
    return [i in set(chosen) for i in range(n_layers)]


# --- spec parsing ---------------------------------------------------------------------


def test_group_bounds_even_and_uneven():
    assert group_bounds(32, 4) == [(0, 8), (8, 16), (16, 24), (24, 32)]
    # The extra layers go to the input-side groups.
    assert group_bounds(30, 4) == [(0, 8), (8, 16), (16, 23), (23, 30)]
    assert group_bounds(3, 3) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(
    "spec,n_layers,layers",
    [
        ("0011", 32, tuple(range(16, 32))),
        ("0001", 32, tuple(range(24, 32))),
        ("1100", 32, tuple(range(0, 16))),
        ("1111", 8, tuple(range(8))),
        ("0000", 8, ()),
        ("0001", 30, tuple(range(23, 30))),
        ("1000", 30, tuple(range(0, 8))),
        ("10", 5, (0, 1, 2)),
        ([7, 2, 5], 8, (2, 5, 7)),
        ((0,), 1, (0,)),
    ],
)
def test_parse_spec(spec, n_layers, layers):
    assert parse_spec(spec, n_layers) == layers


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("", "empty"),
        ([], "empty"),
        ("0021", "'2'"),
        ("00 1", "' '"),
        ("1" * 9, "9 groups"),
        ([8], "out of range"),
        ([-1], "out of range"),
        ([1, 1], "repeats"),
        (["1"], "not an integer"),
        ([True], "not an integer"),
        (3.5, "expected a string"),
    ],
)
def test_parse_spec_rejects(spec, fragment):
    with pytest.raises(ValueError) as err:
        parse_spec(spec, 8)
    message = str(err.value)
    assert "E001" in message and fragment in message
    assert repr(spec) in message  # names what was given


# --- measured behaviour ------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("n_layers,spec", [(8, "0011"), (8, "1000"), (8, [1, 6]), (30, "0001"), (30, "1010")])
def test_measured_pattern_matches_request(make_decoder, family, attn, n_layers, spec):
    model = make_decoder(family, n_layers=n_layers, attn=attn)
    assert bidirectional_layers(model) == [False] * n_layers
    handle = unmask_layers(model, spec)
    assert handle.layers == parse_spec(spec, n_layers)
    assert bidirectional_layers(model) == expected_pattern(n_layers, handle.layers)
    handle.remove()
    assert bidirectional_layers(model) == [False] * n_layers


def ids_and_mask(lengths, vocab=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.zeros((len(lengths), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, vocab, (n,), generator=gen)
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [False, True])
def test_masked_layers_bit_identical_to_stock(make_decoder, family, attn, padded):
    stock = make_decoder(family, attn=attn)
    model = make_decoder(family, attn=attn)
    ids, mask = ids_and_mask([9, 5] if padded else [9, 9])
    unmask_layers(model, "0011")  # layers 4..7
    with torch.no_grad():
        want = stock(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    # hidden_states[i] is the input of layer i: layers 0..3 are untouched.
    for i in range(5):
        assert torch.equal(want[i], got[i]), i
    assert not torch.allclose(want[8][0, :-1], got[8][0, :-1])


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", ["0011", "1111", "1000"])
def test_right_padding_does_not_leak(make_decoder, family, attn, spec):
    model = make_decoder(family, attn=attn)
    unmask_layers(model, spec)
    lengths = [11, 4, 7]
    ids, mask = ids_and_mask(lengths)
    with torch.no_grad():
        batch = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        for row, n in enumerate(lengths):
            alone = model.model(input_ids=ids[row : row + 1, :n]).last_hidden_state
            torch.testing.assert_close(batch[row, :n], alone[0], atol=2e-5, rtol=1e-4)


def test_all_padding_row_gives_no_nan(make_decoder):
    model = make_decoder("llama")
    unmask_layers(model, "1111")
    ids, mask = ids_and_mask([6, 1])
    mask[1] = 0
    with torch.no_grad():
        out = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all()


def layer_response(model, layer_index, position, seq_len=12):
    """Which output positions of one layer move when its input moves at `position`."""
    calls = {}
    layer = model.model.layers[layer_index]

    def hook(module, args, kwargs):
        calls.setdefault("call", (args, dict(kwargs)))

    h = layer.register_forward_pre_hook(hook, with_kwargs=True, prepend=True)
    ids, mask = ids_and_mask([seq_len])
    with torch.no_grad():
        model.model(input_ids=ids, attention_mask=mask, use_cache=False)
        h.remove()
        args, kwargs = calls["call"]
        x = args[0]
        ref = layer(x, *args[1:], **kwargs)[0]
        x2 = x.clone()
        x2[:, position] += 3.0
        out = layer(x2, *args[1:], **kwargs)[0]
    return ((out - ref).abs().amax(dim=-1)[0] > 0).tolist()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_mistral_sliding_window_kept_in_masked_layers(make_decoder, attn):
    model = make_decoder("mistral", attn=attn, sliding_window=4)
    unmask_layers(model, "0001")  # layers 6, 7
    moved = layer_response(model, 0, position=0)
    # Position 0 is visible only to positions 0..3 in a window-4 causal layer.
    assert moved[:4] == [True] * 4 and not any(moved[4:])
    moved = layer_response(model, 7, position=0)
    assert all(moved)  # unmasked: full attention, no window
    moved = layer_response(model, 7, position=11)
    assert all(moved)


def test_remove_restores_stock_model(make_decoder):
    stock = make_decoder("mistral", sliding_window=5)
    model = make_decoder("mistral", sliding_window=5)
    ids, mask = ids_and_mask([10, 6])
    handle = unmask_layers(model, [0, 3, 7])
    assert handle.active
    with torch.no_grad():
        assert not torch.equal(
            model(input_ids=ids, attention_mask=mask).logits, stock(input_ids=ids, attention_mask=mask).logits
        )
        handle.remove()
        assert torch.equal(
            model(input_ids=ids, attention_mask=mask).logits, stock(input_ids=ids, attention_mask=mask).logits
        )
    assert not handle.active
    assert all(layer.self_attn.is_causal for layer in model.model.layers)
    # After removal the same layers can be unmasked again.
    assert unmask_layers(model, [0]).layers == (0,)


def test_overlapping_handles_refused(make_decoder):
    model = make_decoder("llama")
    unmask_layers(model, "0011")
    with pytest.raises(ValueError, match="E004"):
        unmask_layers(model, [7])
    assert unmask_layers(model, [0]).layers == (0,)
    assert bidirectional_layers(model) == [True, False, False, False, True, True, True, True]


def test_training_mode_and_gradient_checkpointing(make_decoder):
    model = make_decoder("llama", attn="sdpa")
    unmask_layers(model, "0001")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids, mask = ids_and_mask([8, 5])
    ids2 = ids.clone()
    ids2[0, 7] = (ids2[0, 7] + 1) % 128
    out = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    out2 = model.model(input_ids=ids2, attention_mask=mask).last_hidden_state
    # A change of the last token reaches earlier positions only through unmasked layers.
    assert not torch.allclose(out[0, :7], out2[0, :7])
    torch.testing.assert_close(out[1], out2[1])
    out.sum().backward()
    assert model.model.layers[7].self_attn.q_proj.weight.grad is not None
    # Same result without checkpointing.
    model.gradient_checkpointing_disable()
    again = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out, again)


@pytest.mark.parametrize("impl", ["flash_attention_2", "flex_attention"])
def test_unsteerable_kernels_refused(make_decoder, impl):
    model = make_decoder("llama")
    model.config._attn_implementation = impl
    with pytest.raises(ValueError, match="E003.*" + impl):
        unmask_layers(model, "0011")


def test_kernel_switched_after_unmasking_fails_loudly(make_decoder):
    model = make_decoder("llama")
    unmask_layers(model, "0011")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="E003"):
        model(input_ids=torch.ones((1, 4), dtype=torch.long))


def test_unsupported_models_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(ValueError, match="E002.*GPT2LMHeadModel.*Llama"):
        unmask_layers(gpt2, "01")
    with pytest.raises(ValueError, match="E002"):
        unmask_layers(torch.nn.Linear(2, 2), "1")
    with pytest.raises(ValueError, match="E002"):
        bidirectional_layers(gpt2)


def test_numeric_spec_explains_lost_zeros():
    # spaCy's CLI parses "--...unmask 0011" as JSON: 11.
    with pytest.raises(ValueError, match="E005.*leading zeros"):
        parse_spec(11, 32)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_unmasked_layers_mask_built_once_per_call(make_decoder, attn, monkeypatch):
    """One mask per decoder call, shared by every unmasked layer: built per layer it cost a
    GPU synchronisation (is anything padded?) and a dozen small kernels in each of them."""
    import spacy_cmllm.decoder.unmask as unmask

    model = make_decoder("llama", attn=attn)
    handle = unmask_layers(model, "0011")  # four layers
    built = []
    original = unmask.padding_only_mask
    monkeypatch.setattr(unmask, "padding_only_mask", lambda *a, **k: built.append(1) or original(*a, **k))
    seen = []
    hooks = [
        model.model.layers[i].self_attn.register_forward_pre_hook(
            lambda m, a, k: seen.append(k.get("attention_mask")), with_kwargs=True
        )
        for i in handle.layers
    ]
    ids, mask = ids_and_mask([9, 5])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert len(built) == 1 and len(seen) == len(handle.layers)
    assert all(m is seen[0] for m in seen) and seen[0].dim() == 4
    # Nothing padded: the unmasked layers get no mask at all (SDPA may then use flash).
    seen.clear()
    ids, mask = ids_and_mask([9, 9])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
        model(input_ids=ids)
    assert len(seen) == 2 * len(handle.layers) and all(m is None for m in seen)
    for hook in hooks:
        hook.remove()
