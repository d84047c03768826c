"""Measure, layer by layer, whether a decoder really attends to the right.

Configuration can be bypassed silently (a kernel that ignores the mask, a transformers
release that builds masks differently), so the product and its tests check behaviour:
for each layer we perturb the layer's INPUT at the last position only and see whether
the layer's OUTPUT at any earlier position moves. In a causal layer it cannot.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import decoder_layers, find_base_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Long enough for every layer kind to show causality (Mistral's sliding window is far
# longer), short enough that the check costs a few milliseconds at load.
CHECK_SEQ_LEN = 6


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def bidirectional_layers(model: nn.Module, *, seq_len: int = 8, seed: int = 0) -> list[bool]:
    """For each decoder layer (input side first): does a position's output depend on a
    LATER position's input? Measured on a random sequence without padding.

    model: a decoder of the Llama layout (see layout.py), optionally peft-wrapped.
    seq_len: length of the random probe sequence; the last position is perturbed.
    seed: seed of a private generator: the global torch RNG is not drawn from, so a probe
        at load does not change what training draws afterwards.
    RETURNS: one bool per layer. Weights are untouched; the model runs in eval mode (no
        dropout) and every submodule gets its own training flag back afterwards.
    """
    base = find_base_model(model)
    layers = decoder_layers(model)
    # Per module, not model.train(flag): a caller may have set some submodules apart.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    # A Hugging Face base model: as a plain Module its config would read as Tensor | Module.
    vocab_size = int(cast("PreTrainedModel", base).config.vocab_size)
    device = next(base.parameters()).device
    input_ids = torch.randint(0, vocab_size, (1, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)

    calls: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
    outputs: dict[int, torch.Tensor] = {}

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls.setdefault(index, (args, dict(kwargs)))

        return hook

    def output_recorder(index: int):
        # The base run's own output is the unperturbed reference: one layer call less
        # per layer, which is a third of the probe's cost on a real model.
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            outputs.setdefault(index, _first(output))

        return hook

    measured = []
    try:
        hooks = [
            layer.register_forward_pre_hook(recorder(i), with_kwargs=True, prepend=True)
            for i, layer in enumerate(layers)
        ]
        hooks += [layer.register_forward_hook(output_recorder(i)) for i, layer in enumerate(layers)]
        try:
            base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        finally:
            for hook in hooks:
                hook.remove()
        for index, layer in enumerate(layers):
            args, kwargs = calls[index]
            hidden = args[0] if args else kwargs.pop("hidden_states")
            rest = args[1:]
            reference = outputs[index]
            perturbed_input = hidden.clone()
            noise = torch.randn(perturbed_input[:, -1].shape, generator=generator).to(hidden)
            perturbed_input[:, -1] += noise * (hidden.float().std().to(hidden.dtype) + 1)
            perturbed = _first(layer(perturbed_input, *rest, **kwargs))
            earlier_change = (perturbed[:, :-1].float() - reference[:, :-1].float()).abs().max()
            scale = reference.float().abs().max() + 1.0
            measured.append(bool(earlier_change > 1e-6 * scale))
    finally:
        for module, training in modes:
            module.training = training
    return measured


def check_unmasked(model: nn.Module, expected: Sequence[int], *, spec: Any) -> None:
    """Raise E036 unless exactly the layers ``expected`` attend to later positions.

    model: the decoder after unmask_layers (and adapters), as it will run.
    expected: the layer indices the spec selects (parse_spec).
    spec: the spec as configured, for the message.
    """
    measured = bidirectional_layers(model, seq_len=CHECK_SEQ_LEN)
    found = [index for index, bidirectional in enumerate(measured) if bidirectional]
    wanted = sorted(expected)
    if found == wanted:
        return
    causal = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    parts = []
    if causal:
        parts.append(f"layers {causal} stayed causal")
    if extra:
        parts.append(f"layers {extra} attend to the right though the spec leaves them causal")
    detail = " (" + "; ".join(parts) + ")"
    raise CmllmError(Errors.E036.format(spec=spec, expected=wanted, measured=found, detail=detail))


@torch.no_grad()
def last_copy_dependence(
    model: nn.Module, *, repeat: int, seq_len: int = CHECK_SEQ_LEN, bos_id: int | None = None, seed: int = 0
) -> list[list[bool]]:
    """Which tokens each token's vector depends on when the text is repeated.

    A random text of ``seq_len`` tokens is laid out as ``BOS x ... x`` (``repeat`` copies)
    and each token's final output is read from the LAST copy, as the pipeline reads it. Then
    token j is changed (in every copy, as a changed text would be) and we look at whether
    token i's vector moves.

    RETURNS: ``seen[i][j]``: token i's vector depends on token j (the diagonal is True).
        Causal and repeat = 1: only j <= i; with repeat >= 2 every token sees every token.
    """
    base = find_base_model(model)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        # A Hugging Face base model: as a plain Module its config would read as Tensor | Module.
        vocab_size = int(cast("PreTrainedModel", base).config.vocab_size)
        device = next(base.parameters()).device
        text = torch.randint(0, vocab_size, (seq_len,), generator=generator)
        head = [] if bos_id is None else [bos_id]

        def last_copy(tokens: torch.Tensor) -> torch.Tensor:
            ids = torch.tensor(head + tokens.tolist() * repeat, device=device)[None]
            hidden = base(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).last_hidden_state
            return hidden[0, -seq_len:].float()

        reference = last_copy(text)
        scale = reference.abs().max() + 1.0
        seen = [[i == j for j in range(seq_len)] for i in range(seq_len)]
        for j in range(seq_len):
            changed = text.clone()
            changed[j] = (
                changed[j] + 1 + int(torch.randint(0, vocab_size - 1, (1,), generator=generator))
            ) % vocab_size
            moved = (last_copy(changed) - reference).abs().amax(dim=-1) > 1e-6 * scale
            for i in range(seq_len):
                if i != j:
                    seen[i][j] = bool(moved[i])
    finally:
        for module, training in modes:
            module.training = training
    return seen
