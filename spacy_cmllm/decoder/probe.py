"""Measure, layer by layer, whether a decoder really attends to the right.

Configuration can be bypassed silently (a kernel that ignores the mask, a transformers
release that builds masks differently), so the product and its tests check behaviour:
for each layer we perturb the layer's INPUT at the last position only and see whether
the layer's OUTPUT at any earlier position moves. In a causal layer it cannot.
"""

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from .layout import decoder_layers, find_base_model


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def bidirectional_layers(model: nn.Module, *, seq_len: int = 8, seed: int = 0) -> List[bool]:
    """For each decoder layer (input side first): does a position's output depend on a
    LATER position's input? Measured on a random sequence without padding.
    """
    base = find_base_model(model)
    layers = decoder_layers(model)
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    vocab_size = int(base.config.vocab_size)
    device = next(base.parameters()).device
    input_ids = torch.randint(0, vocab_size, (1, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)

    calls: Dict[int, Tuple[Tuple[Any, ...], Dict[str, Any]]] = {}

    def recorder(index: int):
        def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
            calls.setdefault(index, (args, dict(kwargs)))

        return hook

    hooks = [layer.register_forward_pre_hook(recorder(i), with_kwargs=True, prepend=True) for i, layer in enumerate(layers)]
    try:
        base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()

    measured = []
    try:
        for index, layer in enumerate(layers):
            args, kwargs = calls[index]
            hidden = args[0] if args else kwargs.pop("hidden_states")
            rest = args[1:]
            reference = _first(layer(hidden, *rest, **kwargs))
            perturbed_input = hidden.clone()
            noise = torch.randn(perturbed_input[:, -1].shape, generator=generator).to(hidden)
            perturbed_input[:, -1] += noise * (hidden.float().std().to(hidden.dtype) + 1)
            perturbed = _first(layer(perturbed_input, *rest, **kwargs))
            earlier_change = (perturbed[:, :-1].float() - reference[:, :-1].float()).abs().max()
            scale = reference.float().abs().max() + 1.0
            measured.append(bool(earlier_change > 1e-6 * scale))
    finally:
        model.train(was_training)
    return measured
