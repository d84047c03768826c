"""Packed rows: several sequences in one row of a decoder call, each computing exactly what
it computes alone (decoder/packed_attention.py + the unmasked layers of decoder/unmask.py)."""

import numpy
import pytest
import torch

from spacy_cmllm.decoder.packed_attention import SEGMENTS_KWARG, check_segments, packed_inputs, segment_positions
from spacy_cmllm.decoder.unmask import unmask_layers
from spacy_cmllm.errors import CmllmError


def packed_row(lengths, *, pad=0, seed=0, vocab=128):
    gen = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(1, vocab, (n,), generator=gen) for n in lengths]
    ids = torch.cat(sequences + [torch.zeros(pad, dtype=torch.long)])
    segments = torch.cat(
        [torch.full((n,), i + 1) for i, n in enumerate(lengths)] + [torch.zeros(pad, dtype=torch.long)]
    )
    return sequences, ids, segments


def packed_vs_alone(model, rows, *, hidden_states=False):
    """Largest difference between each sequence's states in its packed row and alone."""
    seqs_rows, ids, segments = [], [], []
    width = max(len(row_ids) for _, row_ids, _ in rows)
    for seqs, row_ids, row_segments in rows:
        pad = width - len(row_ids)
        ids.append(torch.cat([row_ids, torch.zeros(pad, dtype=torch.long)]))
        segments.append(torch.cat([row_segments, torch.zeros(pad, dtype=torch.long)]))
        seqs_rows.append(seqs)
    ids, segments = torch.stack(ids), torch.stack(segments)
    worst = 0.0
    with torch.no_grad():
        out = model(
            input_ids=ids, use_cache=False, output_hidden_states=True, **packed_inputs(model, segments)
        ).hidden_states
        for r, seqs in enumerate(seqs_rows):
            start = 0
            for seq in seqs:
                alone = model(input_ids=seq[None], use_cache=False, output_hidden_states=True).hidden_states
                for layer_out, layer_alone in zip(out, alone):
                    diff = (layer_out[r, start : start + len(seq)] - layer_alone[0]).abs().max().item()
                    worst = max(worst, diff)
                start += len(seq)
    return worst


@pytest.mark.parametrize("family,window", [("llama", None), ("mistral", 4), ("qwen2", 4)])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", ["0000", "0011", "1111", [0, 5]])
def test_packed_equals_alone(make_decoder, family, window, attn, spec):
    model = make_decoder(family, attn=attn, sliding_window=window, n_layers=6)
    unmask_layers(model, spec)
    # Lengths 1 to well past the sliding window, padding in one row, one row with no padding.
    rows = [packed_row([1, 9, 3, 12], pad=3, seed=1), packed_row([17, 11], seed=2), packed_row([2], seed=3)]
    assert packed_vs_alone(model, rows) <= 1e-4


def test_packing_changes_something_when_segments_leak(make_decoder):
    """The equality above is not vacuous: one segment id for the whole row differs."""
    model = make_decoder("llama", n_layers=4)
    unmask_layers(model, "0011")
    seqs, ids, segments = packed_row([5, 6])
    with torch.no_grad():
        right = model(input_ids=ids[None], use_cache=False, **packed_inputs(model, segments[None])).logits
        leaky = model(input_ids=ids[None], use_cache=False, **packed_inputs(model, (segments > 0).long()[None])).logits
    assert not torch.allclose(right[0, :5], leaky[0, :5], atol=1e-3)  # the unmasked layers saw doc 2


def test_mistral_window_applies_inside_a_segment(make_decoder):
    model = make_decoder("mistral", sliding_window=3, n_layers=2)
    seqs, ids, segments = packed_row([2, 8])
    mask = packed_inputs(model, segments[None])["attention_mask"][0, 0]
    # Position 9 (the 8th of segment 2) sees positions 7, 8, 9 only.
    assert mask[9].nonzero().flatten().tolist() == [7, 8, 9]
    assert mask[2].nonzero().flatten().tolist() == [2]  # a segment's first position: itself


def test_positions_restart_per_segment():
    segments = torch.tensor([[1, 1, 1, 2, 3, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    assert segment_positions(segments).tolist() == [[0, 1, 2, 0, 0, 1, 0, 1], list(range(8))]


@pytest.mark.parametrize(
    "segments",
    [
        torch.tensor([[1, 2, 1]]),  # a segment in two runs
        torch.tensor([[2, 1]]),  # ids decreasing
        torch.tensor([[-1, 1]]),
        torch.tensor([1, 2]),  # 1-D
        torch.tensor([[1.0, 2.0]]),  # float
    ],
)
def test_bad_segments_refused(segments):
    with pytest.raises(ValueError, match="E078"):
        check_segments(segments)


def test_prepared_mask_without_segments_refused_when_unmasked(make_decoder):
    """A 4-D mask would leave the unmasked layers unable to keep documents apart."""
    model = make_decoder("llama", n_layers=4)
    unmask_layers(model, "0011")
    seqs, ids, segments = packed_row([3, 4])
    call = packed_inputs(model, segments[None])
    del call[SEGMENTS_KWARG]
    with pytest.raises(ValueError, match="E078"):
        model(input_ids=ids[None], use_cache=False, **call)


@pytest.mark.parametrize("impl", ["flash_attention_2", "flex_attention"])
def test_kernels_without_custom_masks_refused(make_decoder, impl):
    model = make_decoder("llama", n_layers=2)
    model.config._attn_implementation = impl
    with pytest.raises(ValueError, match="E075.*" + impl):
        packed_inputs(model, torch.tensor([[1, 1, 2]]))


def test_gradient_checkpointing_recomputes_with_each_calls_segments(make_decoder):
    """Two packed calls of different layouts, backward after both: the same gradients as
    without checkpointing."""
    grads = []
    for checkpointing in (False, True):
        model = make_decoder("llama", n_layers=4)
        unmask_layers(model, "0011")
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        outs = []
        for lengths, seed in (([3, 5, 2], 0), ([7, 1], 1)):
            seqs, ids, segments = packed_row(lengths, seed=seed)
            outs.append(
                model.model(
                    input_ids=ids[None], use_cache=False, **packed_inputs(model, segments[None])
                ).last_hidden_state
            )
        sum(o.square().sum() for o in outs).backward()
        grads.append(model.model.layers[3].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_segments_are_validated_once(monkeypatch):
    """Validated on the host, then not again on the device: on a GPU each validation waits
    for the GPU (it reads a result back)."""
    import spacy_cmllm.decoder.packed_attention as packing

    reads = []
    original = torch.Tensor.any
    monkeypatch.setattr(torch.Tensor, "any", lambda self, *a, **k: reads.append(1) or original(self, *a, **k))
    moved = packing.segments_to_device(
        numpy.array([[1, 1, 2, 0]]), torch.device("cpu"), move=lambda a, d: torch.from_numpy(a.copy())
    )
    validated = len(reads)
    assert validated == 2 and moved.tolist() == [[1, 1, 2, 0]]
    packing.check_segments(moved)
    assert len(reads) == validated
    fresh = torch.tensor([[1, 2, 1, 0]])
    with pytest.raises(CmllmError, match="E078"):
        packing.check_segments(fresh)
    with pytest.raises(CmllmError, match="E078"):
        packing.segments_to_device(numpy.array([[1, 2, 1, 0]]), torch.device("cpu"))
