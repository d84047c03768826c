"""Layer-wise causal-mask removal (Dukić & Šnajder, 2024) without copying any forward.

Two things decide causality in a Hugging Face decoder layer, and both must change:

* the ``attention_mask`` keyword the base model hands to every layer (a 4-D causal mask,
  or None when SDPA can use its own causal kernel), and
* the attention module's ``is_causal`` flag, which SDPA honours whenever that mask is None.

So for each chosen layer we clear ``is_causal`` and install a forward pre-hook that swaps
the layer's mask for a padding-only mask: every real token sees every real token, padding
stays hidden. The 2-D padding mask travels WITH each call: a pre-hook on the base model
adds it as one more keyword, which the base model's forward hands on to every layer (its
``**kwargs``, which the attention functions accept and ignore). No state is shared between
calls, so gradient checkpointing, which re-runs each layer and its pre-hooks during
backward, rebuilds the mask of that layer's own forward even after later decoder calls
with other batch sizes and padding. Layers that are not chosen are not touched at all, which keeps them bit-identical to the stock model
(including Mistral's sliding window).

Packed rows (decoder/packed_attention.py) send per-position segment ids with the call instead
(``cmllm_segments``); an unmasked layer then sees a block-diagonal FULL mask: every real
token sees every real token of its own segment and nothing else. A 4-D mask without
segment ids is refused (E078): the unmasked layers could not tell its documents apart. Nothing here depends on a model's forward code, so
transformers upgrades do not silently undo it; ``probe.bidirectional_layers`` checks it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union, cast

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import check_attention_supported, decoder_layers, find_base_model
from .packed_attention import SEGMENTS_KWARG, _mask_dtype, block_mask, check_segments

UnmaskSpec = Union[str, Sequence[int]]  # noqa: UP007  (a runtime alias: `|` needs 3.10's types)

# Set on the base model while a handle is active: which layers it unmasked.
_ACTIVE_ATTR = "_cmllm_unmasked_layers"

# The keyword under which the base model's pre-hook passes the 2-D padding mask of the
# current call to every decoder layer. Prefixed so it cannot clash with a real argument.
PADDING_KWARG = "cmllm_padding_mask"
# The ready 4-D mask (or None) of the unmasked layers for the current call, built once by the
# base model's pre-hook and handed to every layer the same way.
UNMASKED_KWARG = "cmllm_unmasked_mask"


def group_bounds(n_layers: int, n_groups: int) -> list[tuple[int, int]]:
    """Split n_layers consecutive layers into n_groups groups, input side first.

    When n_groups does not divide n_layers, the groups nearest the INPUT get one layer
    more (30 layers in 4 groups: 8, 8, 7, 7), so sizes differ by at most one.
    """
    base, extra = divmod(n_layers, n_groups)
    bounds = []
    start = 0
    for g in range(n_groups):
        size = base + (1 if g < extra else 0)
        bounds.append((start, start + size))
        start += size
    return bounds


def parse_spec(spec: UnmaskSpec, n_layers: int) -> tuple[int, ...]:
    """The sorted layer indices a spec selects.

    spec: a string of '0'/'1', one character per group of consecutive layers, leftmost =
    input side ("0011" on 32 layers -> 16..31); or a non-empty sequence of layer indices.
    "0000" selects nothing; an empty spec is rejected, since it is more likely a config
    mistake than a request.
    """
    last = n_layers - 1

    def invalid(why: str) -> ValueError:
        return CmllmError(Errors.E001.format(spec=spec, why=why, n_layers=n_layers, last=last))

    if isinstance(spec, str):
        text = spec.strip()
        if text == "":
            raise invalid("it is empty")
        bad = sorted(set(text) - {"0", "1"})
        if bad:
            raise invalid(f"it contains {''.join(bad)!r}, only '0' and '1' are allowed")
        if len(text) > n_layers:
            raise invalid(f"it has {len(text)} groups but the model has only {n_layers} layers")
        chosen: list[int] = []
        for bit, (start, end) in zip(text, group_bounds(n_layers, len(text))):
            if bit == "1":
                chosen.extend(range(start, end))
        return tuple(chosen)
    if isinstance(spec, int) and not isinstance(spec, bool):
        raise CmllmError(Errors.E005.format(spec=spec))
    if isinstance(spec, (bytes, bytearray)) or not isinstance(spec, Sequence):
        raise invalid(f"expected a string or a list of integers, got {type(spec).__name__}")
    if len(spec) == 0:
        raise invalid("it is empty")
    indices = []
    for item in spec:
        if isinstance(item, bool) or not isinstance(item, int):
            raise invalid(f"{item!r} is not an integer layer index")
        if not 0 <= item <= last:
            raise invalid(f"layer {item} is out of range")
        indices.append(item)
    if len(set(indices)) != len(indices):
        raise invalid("it repeats a layer")
    return tuple(sorted(indices))


def padding_only_mask(
    padding_mask: torch.Tensor | None,
    *,
    query_length: int,
    like: torch.Tensor | None,
    boolean: bool,
    dtype: torch.dtype,
) -> torch.Tensor | None:
    """A 4-D mask that hides padded keys and nothing else, or None when nothing is padded.

    padding_mask: the 2-D (batch, key) mask the base model got; 1 = real token.
    boolean: True for SDPA (True = attend), False for eager (additive 0 / dtype-min).
    """
    if padding_mask is None or padding_mask.dim() != 2 or bool(padding_mask.all()):
        return None
    keep = padding_mask.to(torch.bool)
    if like is not None:
        keep = keep[:, : like.shape[-1]]
    # A sequence that is all padding would give rows with nothing to attend to, which
    # SDPA turns into NaN; let those rows attend everywhere (their outputs are unused).
    empty = ~keep.any(dim=-1, keepdim=True)
    keep = keep | empty
    keep = keep[:, None, None, :].expand(-1, 1, query_length, -1)
    if boolean:
        return keep
    additive = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return additive.masked_fill(~keep, torch.finfo(dtype).min)


@dataclass
class UnmaskHandle:
    """What unmask_layers did, so it can be inspected and undone."""

    layers: tuple[int, ...]
    _base: nn.Module | None = field(default=None, repr=False)
    _hooks: list[Any] = field(default_factory=list, repr=False)
    _restore: list[tuple[nn.Module, Any]] = field(default_factory=list, repr=False)

    @property
    def active(self) -> bool:
        return self._base is not None

    def remove(self) -> None:
        """Restore the stock model: hooks removed, ``is_causal`` flags as they were."""
        for hook in self._hooks:
            hook.remove()
        for attn, was_causal in self._restore:
            attn.is_causal = was_causal
        if self._base is not None:
            active = set(getattr(self._base, _ACTIVE_ATTR, ())) - set(self.layers)
            setattr(self._base, _ACTIVE_ATTR, tuple(sorted(active)))
        self._hooks.clear()
        self._restore.clear()
        self._base = None


def _attention_mask_from_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    # The base model's forward is (input_ids, attention_mask, ...).
    if "attention_mask" in kwargs:
        return kwargs["attention_mask"]
    return args[1] if len(args) > 1 else None


def _padding_from_layer_mask(mask: Any) -> torch.Tensor | None:
    """The 2-D key padding mask read back from a layer's own 4-D mask, for a layer called
    without going through the base model (so without PADDING_KWARG).

    The diagonal is the one entry every mask kind shares: a real query always sees itself
    (causal, sliding window) and a padded key is hidden from everyone, itself included.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[-1] != mask.shape[-2]:
        return None
    diagonal = mask[:, 0].diagonal(dim1=-2, dim2=-1)
    return diagonal if mask.dtype == torch.bool else diagonal == 0


def _query_length(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    if isinstance(ids, torch.Tensor):
        return int(ids.shape[1])
    embeds = kwargs.get("inputs_embeds")
    return int(embeds.shape[1]) if isinstance(embeds, torch.Tensor) else None


def _unmasked_mask(
    base: nn.Module,
    impl: str,
    *,
    padding: torch.Tensor | None,
    segments: torch.Tensor | None,
    query_length: int | None,
) -> torch.Tensor | None:
    """The attention mask of every unmasked layer for one call of the base model: the
    block-diagonal full mask of packed rows, the padding-only mask, or None when nothing is
    padded (then SDPA runs without a mask, and can pick its flash kernel)."""
    boolean = impl == "sdpa"
    dtype = _mask_dtype(base)
    if segments is not None:
        return block_mask(segments, causal=False, boolean=boolean, dtype=dtype)
    if padding is None or query_length is None:
        return None
    return padding_only_mask(padding, query_length=query_length, like=None, boolean=boolean, dtype=dtype)


class PassPadding:
    """The base model's forward pre-hook: builds the unmasked layers' mask once per call and
    hands it (and the call's 2-D padding mask) on to every decoder layer.

    A module-level class rather than a closure, so that a model carrying the hook pickles
    (``nlp.pipe(n_process=...)`` under spawn, ``pickle.dumps(nlp)``)."""

    def __init__(self, base: nn.Module):
        self.base = base

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        # Checked per call: set_attn_implementation() may switch kernels after unmasking,
        # and a kernel we cannot steer must fail loudly rather than run causally.
        impl = check_attention_supported(self.base)
        mask = _attention_mask_from_call(args, kwargs)
        segments = kwargs.get(SEGMENTS_KWARG)
        if segments is not None:
            check_segments(segments)
        elif isinstance(mask, dict) or (isinstance(mask, torch.Tensor) and mask.dim() == 4):
            raise CmllmError(
                Errors.E078.format(
                    why=f"a prepared attention mask reached a model with unmasked layers without {SEGMENTS_KWARG!r}; build the call with spacy_cmllm.decoder.packed_attention.packed_inputs"
                )
            )
        # The unmasked layers' mask, built ONCE per call and bound into this call's layer
        # calls (and into gradient checkpointing's saved partials), never into state that a
        # later call could overwrite. Built per layer it cost a device synchronisation and
        # a dozen small kernels in every unmasked layer of every call.
        kwargs[UNMASKED_KWARG] = _unmasked_mask(
            self.base,
            impl,
            padding=mask if isinstance(mask, torch.Tensor) else None,
            segments=segments,
            query_length=_query_length(args, kwargs),
        )
        return args, kwargs


class SwapMask:
    """An unmasked layer's forward pre-hook: replaces the causal mask it was given by the
    call's unmasked mask (padding-only, or block-diagonal full for packed rows). Picklable,
    as PassPadding."""

    def __init__(self, base: nn.Module):
        self.base = base

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        impl = check_attention_supported(self.base)
        hidden = args[0] if args else kwargs["hidden_states"]
        incoming = kwargs.get("attention_mask")
        segments = kwargs.pop(SEGMENTS_KWARG, None)
        if UNMASKED_KWARG in kwargs:
            kwargs.pop(PADDING_KWARG, None)
            kwargs["attention_mask"] = kwargs.pop(UNMASKED_KWARG)
            return args, kwargs
        # A layer called by itself, not through the base model: build its mask here.
        boolean = incoming.dtype == torch.bool if isinstance(incoming, torch.Tensor) else impl == "sdpa"
        if segments is not None:
            # Packed rows: each segment sees all of itself and nothing else.
            kwargs.pop(PADDING_KWARG, None)
            kwargs["attention_mask"] = block_mask(segments, causal=False, boolean=boolean, dtype=hidden.dtype)
            return args, kwargs
        if PADDING_KWARG in kwargs:
            padding = kwargs.pop(PADDING_KWARG)
        else:
            padding = _padding_from_layer_mask(incoming)
        kwargs["attention_mask"] = padding_only_mask(
            padding,
            query_length=hidden.shape[1],
            like=incoming if isinstance(incoming, torch.Tensor) else None,
            boolean=boolean,
            dtype=hidden.dtype,
        )
        return args, kwargs


def unmask_layers(model: nn.Module, spec: UnmaskSpec) -> UnmaskHandle:
    """Remove the causal mask in the layers ``spec`` selects; padding stays masked.

    model: a Hugging Face decoder of the Llama layout (Llama, Mistral, Qwen2, Gemma, Phi-3,
        a *ForCausalLM or a bare base model, optionally peft-wrapped).
    spec: group string such as "0011" (leftmost = input side) or a list of layer indices.
    RETURNS: a handle with ``.layers`` and ``.remove()``.
    """
    base = find_base_model(model)
    layers = decoder_layers(model)
    chosen = parse_spec(spec, len(layers))
    if not chosen:
        return UnmaskHandle(layers=())
    check_attention_supported(model)
    already = sorted(set(getattr(base, _ACTIVE_ATTR, ())) & set(chosen))
    if already:
        raise CmllmError(Errors.E004.format(layers=already))

    handle = UnmaskHandle(layers=chosen, _base=base)
    handle._hooks.append(base.register_forward_pre_hook(PassPadding(base), with_kwargs=True))
    for index in chosen:
        layer = layers[index]
        # check_attention_supported checked it; torch types it Tensor | Module.
        attn = cast(nn.Module, layer.self_attn)
        handle._restore.append((attn, getattr(attn, "is_causal", True)))
        # torch types Module.__setattr__ for tensors and submodules only; a plain flag is fine.
        attn.is_causal = False  # type: ignore[assignment]
        handle._hooks.append(layer.register_forward_pre_hook(SwapMask(base), with_kwargs=True))
    setattr(base, _ACTIVE_ATTR, tuple(sorted(set(getattr(base, _ACTIVE_ATTR, ())) | set(chosen))))
    return handle
