"""Early exit: run a decoder only up to the highest layer whose hidden state is read.

Vectors from an intermediate layer are nearly as good for sequence labelling as the last
layer's (Kukić et al., 2025), and the layers above are then pure cost, in training and in
prediction. A layer's output never depends on the layers above it, unmasked or not, so
stopping there computes exactly the hidden state the full model has at that layer.

The base model's forward loops over ``self.layers`` and applies ``self.norm`` last. For the
length of one call, ``exit_after`` gives it the first ``n`` layers and an identity in place of
the final norm, so the call returns the un-normalised output of layer ``n`` as the full model's
``hidden_states[n]``. Nothing is copied; the modules are put back even if the call fails.
Gradient checkpointing recomputes single layers in backward, never the loop, so it is
unaffected by the swap being undone before backward.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

from torch import nn

from ..errors import CmllmError, Errors
from .layout import decoder_layers, find_base_model


def resolve_states(indices: Sequence[int], n_layers: int) -> list:
    """Indices into (embeddings, layer 1, ..., last layer) made non-negative (E040 where
    one is out of range): -1 and n_layers both name the final output."""
    n_states = n_layers + 1
    resolved = []
    for index in indices:
        if not -n_states <= index < n_states:
            raise CmllmError(
                Errors.E040.format(
                    name="hidden_layers",
                    value=list(indices),
                    why=f"the decoder has {n_layers} layers: use indices from {-n_states} to {n_layers}",
                )
            )
        resolved.append(index % n_states)
    return resolved


def exit_layer(indices: Sequence[int], n_layers: int) -> int:
    """How many decoder layers must run so that the states ``indices`` can be read."""
    return max(resolve_states(indices, n_layers))


@contextmanager
def exit_after(model: nn.Module, n: int) -> Iterator[None]:
    """Within the block, a forward of ``model`` runs its first ``n`` decoder layers only and
    returns layer ``n``'s output without the final norm. ``n`` equal to the number of layers
    leaves the model as it is (the final output keeps its norm)."""
    base = find_base_model(model)
    n_layers = len(decoder_layers(base))
    if not 1 <= n <= n_layers:
        raise CmllmError(Errors.E040.format(name="exit layer", value=n, why=f"must be from 1 to {n_layers}"))
    if n == n_layers:
        yield
        return
    # find_base_model checked `layers`; torch types any submodule attribute as Tensor | Module.
    layers, norm = cast(nn.ModuleList, base.layers), base.norm
    base.layers = nn.ModuleList(list(layers)[:n])
    base.norm = nn.Identity()
    try:
        yield
    finally:
        base.layers, base.norm = layers, norm
