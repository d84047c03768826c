"""Several short sequences in one row of a decoder call, each attending only to itself.

A packed row holds segments one after another (e.g. ``BOS doc1  BOS doc2  BOS doc3  pad``).
``segments`` numbers them per row: 0 for padding, 1, 2, ... for the segments, each a run of
consecutive positions. ``packed_inputs`` turns that into the keywords of one decoder call:

* ``attention_mask``: a 4-D mask for the layers that stay causal, block-diagonal and causal
  inside each segment (with the model's sliding window inside a segment where it has one).
  transformers' mask builders pass a 4-D mask through unchanged to every layer (models that
  mix sliding and full layers, such as Qwen2 and Gemma-2, get one mask per layer type);
* ``position_ids``: restarting at 0 in every segment, so rotary positions are those the
  segment would have alone;
* ``cmllm_segments`` (SEGMENTS_KWARG): the segment ids themselves, travelling with the call
  to every layer, from which an unmasked layer (decoder/unmask.py) builds a block-diagonal
  FULL mask. Nothing is stored between calls, so gradient checkpointing recomputes each
  layer with its own call's segments.

So every segment computes exactly what it computes alone. Only the ``sdpa`` and ``eager``
kernels take such a mask; others are refused (E075) rather than run unpacked.
"""

from typing import TYPE_CHECKING, Any, cast

import numpy
import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import CmllmError, Errors
from .layout import attention_implementation, decoder_layers, find_base_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Must equal unmask.SEGMENTS_KWARG (kept here so decoder/unmask.py imports from us).
SEGMENTS_KWARG = "cmllm_segments"
PACKING_KERNELS = ("sdpa", "eager")
# Segment tensors already validated (weakly held, by identity): on a GPU every validation
# reads a result back and so waits for the GPU, and each packed call was validated twice
# (building its keywords, then in the unmasked model's hook).
_CHECKED: "WeakIdKeyDictionary" = WeakIdKeyDictionary()


def check_packing_supported(model: nn.Module) -> str:
    """The attention kernel, if it takes a custom 4-D mask ('sdpa' or 'eager'); else E075."""
    impl = attention_implementation(model)
    if impl not in PACKING_KERNELS:
        raise CmllmError(Errors.E075.format(impl=impl))
    return impl


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """Position ids restarting at 0 at the start of every run of equal segment ids."""
    batch, length = segments.shape
    index = torch.arange(length, device=segments.device).expand(batch, length)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - first


def check_segments(segments: Any) -> torch.Tensor:
    """Validate a (batch, length) integer tensor of segment ids (E078 on anything else):
    0 = padding, and each positive id one run of consecutive positions, ids increasing
    along the row."""
    if (
        not isinstance(segments, torch.Tensor)
        or segments.dim() != 2
        or segments.dtype.is_floating_point
        or segments.dtype == torch.bool
    ):
        what = f"{type(segments).__name__} {getattr(segments, 'dtype', '')} {tuple(getattr(segments, 'shape', ()))}"
        raise CmllmError(Errors.E078.format(why=f"expected a 2-D integer tensor, got {what.strip()}"))
    if segments.numel() == 0 or segments in _CHECKED:
        return segments
    if bool((segments < 0).any()):
        raise CmllmError(Errors.E078.format(why="segment ids must be >= 0 (0 = padding)"))
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    before = torch.zeros_like(segments)
    before[:, 1:] = segments.cummax(dim=1).values[:, :-1]
    if bool((starts & (segments > 0) & (segments <= before)).any()):
        raise CmllmError(
            Errors.E078.format(
                why="each segment must be one run of consecutive positions, with ids increasing along the row"
            )
        )
    _CHECKED[segments] = True
    return segments


def segments_to_device(segments: numpy.ndarray, device: torch.device, move=None) -> torch.Tensor:
    """Host segment ids validated where that costs no GPU wait (on the host), then moved to
    `device` (by `move(array, device)` when given) and known as valid there."""
    checked = check_segments(torch.from_numpy(numpy.ascontiguousarray(segments)))
    moved = move(segments, device) if move is not None else checked.to(device)
    if moved is not checked:
        _CHECKED[moved] = True
    return moved


def block_mask(
    segments: torch.Tensor,
    *,
    causal: bool,
    sliding_window: int | None = None,
    boolean: bool,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A (batch, 1, length, length) mask: query i sees key j iff both are in the same
    segment (> 0), and, if causal, j <= i (and i - j < sliding_window where given).

    A padding query sees only itself, so no row is empty (SDPA gives NaN for an empty row);
    its output is never read. boolean: True = attend (SDPA); else additive 0 / dtype-min
    (eager).
    """
    length = segments.shape[1]
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
    if causal or sliding_window is not None:
        q = torch.arange(length, device=segments.device)[:, None]
        k = torch.arange(length, device=segments.device)[None, :]
        allowed = k <= q if causal else torch.ones((length, length), dtype=torch.bool, device=segments.device)
        if sliding_window is not None:
            allowed = allowed & (k > q - sliding_window)
        same = same & allowed[None]
    same = same | torch.eye(length, dtype=torch.bool, device=segments.device)[None]
    keep = same[:, None]
    if boolean:
        return keep
    additive = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return additive.masked_fill(~keep, torch.finfo(dtype).min)


def _mask_dtype(base: nn.Module) -> torch.dtype:
    # The stock mask builders use the dtype of the input embeddings.
    # Hugging Face's method where the model has it: as a plain Module it would read as Tensor | Module.
    embeddings = cast("PreTrainedModel", base).get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    return weight.dtype if isinstance(weight, torch.Tensor) and weight.dtype.is_floating_point else torch.float32


def packed_inputs(model: nn.Module, segments: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
    """The keywords for a decoder call over packed rows: ``attention_mask`` (4-D, or one per
    layer type for models that mix sliding and full layers), ``position_ids`` and the
    segment ids under SEGMENTS_KWARG. Pass them with ``input_ids`` (and ``use_cache=False``).

    model: the decoder (any wrapper of a Llama-layout base model).
    segments: (batch, length) integers, 0 = padding, 1, 2, ... one run per segment.
    """
    impl = check_packing_supported(model)
    segments = check_segments(segments)
    base = find_base_model(model)
    config = base.config
    boolean = impl == "sdpa"
    dtype = _mask_dtype(base)
    # Whatever each layer declares (a str in transformers), None where it declares nothing.
    layer_types: set[Any] = {getattr(layer, "attention_type", None) for layer in decoder_layers(base)}
    if layer_types - {None}:
        # Qwen2, Gemma-2: the forward takes a mapping from layer type to mask.
        mask: torch.Tensor | dict[str, torch.Tensor] = {}
        for kind in layer_types:
            window = getattr(config, "sliding_window", None) if kind == "sliding_attention" else None
            mask[kind] = block_mask(segments, causal=True, sliding_window=window, boolean=boolean, dtype=dtype)
    else:
        # Llama (no window); Mistral and Phi-3 apply config.sliding_window in every layer.
        window = getattr(config, "sliding_window", None)
        mask = block_mask(segments, causal=True, sliding_window=window, boolean=boolean, dtype=dtype)
    return {"attention_mask": mask, "position_ids": segment_positions(segments), SEGMENTS_KWARG: segments}
