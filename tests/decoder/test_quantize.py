import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spacy_cmllm.decoder.lora import add_lora
from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.decoder.quantize import Int8Linear, int8_copy, int8_kernel
from spacy_cmllm.decoder.unmask import unmask_layers


def test_int8_linear_close_to_float_and_per_token():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    q = Int8Linear(linear)
    x = torch.randn(2, 5, 64)
    want, got = linear(x), q(x)
    assert got.shape == want.shape
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    # A token's output does not depend on the other tokens of the call.
    torch.testing.assert_close(q(x[:1, 2:3]), got[:1, 2:3], atol=0, rtol=0)


@pytest.mark.skipif(int8_kernel().name != "onednn", reason="oneDNN's prepacked int8 kernel is not exact on this CPU")
def test_onednn_kernel_computes_what_int_mm_computes():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    # At the weight width this CPU's oneDNN kernel is exact for (7-bit without VNNI).
    levels = int8_kernel().weight_levels
    fast = Int8Linear(linear, kernel="onednn", weight_levels=levels)
    plain = Int8Linear(linear, kernel="int_mm", weight_levels=levels)
    x = torch.randn(3, 7, 96)
    x[..., :4] *= 50
    with torch.no_grad():
        got, want = fast(x), plain(x)
        # The same integers; only the order of two float multiplications differs.
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        # Each token alone, exactly as in its batch.
        torch.testing.assert_close(fast(x[1:2, 3:4]), got[1:2, 3:4], atol=0, rtol=0)
        # The int8 weights are held once, packed; a copy or a pickle packs its own.
        assert fast.weight_t is None
        assert torch.equal(fast.int8_weight(), plain.int8_weight())
        for clone in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
            torch.testing.assert_close(clone(x), got, atol=0, rtol=0)
            assert clone.weight_t is None and torch.equal(clone.int8_weight(), plain.int8_weight())
    assert "_packed" not in fast.state_dict()


@pytest.mark.parametrize("spec", ["0000", "0011"])
def test_int8_copy_merges_adapters_and_keeps_the_original(make_decoder, spec):
    model = make_decoder("llama", n_layers=4)
    handle = unmask_layers(model, spec)
    model = add_lora(model, r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "v_proj"])
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # adapters that change the output
    handles = {}
    copy = int8_copy(model, unmask=spec, handle=handle, rehook=lambda h: handles.setdefault("new", h))
    ids = torch.randint(1, 128, (2, 9))
    with torch.no_grad():
        want = model(input_ids=ids, use_cache=False).logits
        got = copy(input_ids=ids, use_cache=False).logits
    assert not any(isinstance(m, torch.nn.Linear) for m in copy.model.layers.modules())
    # The frozen embeddings are shared with the original, not copied.
    assert copy.model.embed_tokens.weight is model.get_base_model().model.embed_tokens.weight
    cosine = torch.nn.functional.cosine_similarity(want, got, dim=-1)
    assert cosine.min() > 0.99
    # The original still has its adapters, is float, and is unmasked as before.
    assert any("lora_" in n for n, _ in model.named_parameters())
    expected = [i in handle.layers for i in range(4)] if spec != "0000" else [False] * 4
    assert bidirectional_layers(model) == expected
    assert bidirectional_layers(copy) == expected
    if spec != "0000":
        assert handles["new"].layers == handle.layers


def test_int8_copy_never_shares_an_embedding_that_merging_changes(make_decoder):
    model = add_lora(
        make_decoder("llama", n_layers=4), r=4, alpha=8.0, dropout=0.0, target_modules=["q_proj", "embed_tokens"]
    )
    for name, p in model.named_parameters():
        if "lora_embedding_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    embedding = model.get_base_model().model.embed_tokens.base_layer.weight
    before = embedding.detach().clone()
    copy = int8_copy(model, unmask="0000")
    assert copy.model.embed_tokens.weight is not embedding
    assert torch.equal(embedding, before)


def test_int8_copy_refuses_other_devices(make_decoder):
    model = make_decoder("llama", n_layers=2).to("meta")
    with pytest.raises(ValueError, match="E077"):
        int8_copy(model, unmask="00")


EXACTNESS_SCRIPT = r"""
import torch
from spacy_cmllm.decoder.quantize import Int8Kernel, Int8Linear, int8_kernel, is_exact

kernel, levels = int8_kernel()
torch.manual_seed(0)
linear = torch.nn.Linear(512, 256)
q = Int8Linear(linear, weight_levels=levels, kernel=kernel)
x = torch.randn(64, 512) * 4
x[:, :8] *= 50  # outlier channels, as LLM activations have
# The same quantization, with the product in float64 (exact for these integers).
scale = x.abs().amax(dim=1, keepdim=True) / 127.0
codes = torch.round(x / scale).clamp(-127, 127)
exact = (codes.double() @ q.int8_weight().t().double()) * scale.double() * q.weight_scale.double() + linear.bias.double()
got = q(x).double()
exact_at = [is_exact(Int8Kernel(name, n)) for name in ("onednn", "int_mm") for n in (127, 63)]
print(levels, float((got - exact).abs().max() / exact.abs().max()), kernel, *exact_at)
"""


@pytest.mark.parametrize("isa", ["native", "AVX2"])
def test_int8_products_are_exact_where_the_cpu_kernel_saturates(isa):
    """oneDNN's AVX2 int8 kernel (no VNNI) sums pairs of products in 16 bits, which saturate
    with full-range weights: held to AVX2 it is chosen only with 7-bit weight levels.
    torch._int_mm comes after it (a plain loop on CPUs without VNNI). Whatever is chosen
    must be exact."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    if isa == "AVX2":
        env.update(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run(
        [sys.executable, "-c", EXACTNESS_SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    levels, error, kernel = int(out[0]), float(out[1]), out[2]
    candidates = [("onednn", 127), ("onednn", 63), ("int_mm", 127), ("int_mm", 63)]
    exact = [(name, n) for (name, n), ok in zip(candidates, out[3:]) if ok == "True"]
    # The first exact candidate in this order, and it is exact on a real layer too.
    assert exact and (kernel, levels) == exact[0]
    if isa == "AVX2":
        assert (kernel, levels) != ("onednn", 127)
    assert error < 1e-6


def test_shared_codes_quantize_a_block_input_once_and_never_serve_stale(make_decoder, monkeypatch):
    from spacy_cmllm.decoder import quantize

    model = make_decoder("llama", n_layers=2)
    unshared = int8_copy(model, unmask="00")
    for module in unshared.modules():
        if isinstance(module, Int8Linear):
            module.shared = None
    shared = int8_copy(model, unmask="00")
    calls = []
    real = quantize.quantize_per_token
    monkeypatch.setattr(quantize, "quantize_per_token", lambda x, **kw: calls.append(x.shape) or real(x, **kw))
    ids = torch.randint(1, 128, (2, 9))
    with torch.no_grad():
        want = unshared(input_ids=ids, use_cache=False).logits
        n_unshared = len(calls)
        calls.clear()
        got = shared(input_ids=ids, use_cache=False).logits
    # 7 linear layers per block, 4 distinct inputs: (q, k, v), o, (gate, up), down.
    assert (n_unshared, len(calls)) == (2 * 7, 2 * 4)
    torch.testing.assert_close(got, want, atol=0, rtol=0)

    attn = shared.model.layers[0].self_attn
    x = torch.randn(1, 3, attn.q_proj.in_features)
    first = attn.k_proj(x)
    x.mul_(2.0)  # changed in place after q read it: k and v must not reuse its codes
    torch.testing.assert_close(attn.v_proj(x) / 2, attn.v_proj(x.clone()) / 2)
    torch.testing.assert_close(attn.k_proj(x), 2 * first, rtol=0.02, atol=1e-4)
