"""The Thinc model: Docs → pieces → windows → decoder → per-piece vectors per Doc.

With ``repeat`` > 1 a window's pieces follow its BOS several times and each piece is read
from its last copy (sequence repetition, decoder/windows.py); the decoder runs only up to the
highest layer that ``hidden_layers`` reads (early exit, decoder/early_exit.py).

Its output is spacy-transformers' FullTransformerBatch, so the stock ``transformer``
component stores it in ``doc._.trf_data`` and ``TransformerListener.v1`` pools it into one
vector per token for ``ner``, ``tagger`` and any other listener. Each token owns exactly its
own pieces (per-token encoding), so the alignment is a plain running index.
"""

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy
import torch
from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData, WordpieceBatch
from thinc.api import PyTorchShim
from thinc.types import Floats2d, Floats3d, Ints1d, Ints2d, Ragged
from torch.profiler import record_function
from transformers.file_utils import ModelOutput

from ..decoder.adapter_optimizer import AdapterOptimizer, AdapterStepper
from ..decoder.backbone import Backbone, BackboneSettings
from ..decoder.early_exit import exit_after, resolve_states
from ..decoder.layout import decoder_layers
from ..decoder.packed_attention import check_packing_supported, packed_inputs, segments_to_device
from ..decoder.packed_rows import pack_rows, pad_packed
from ..decoder.pieces import TokenPieces
from ..decoder.smoothing import DEFAULT_ALPHA
from ..decoder.threads import settle_worker_threads
from ..decoder.windows import (
    EXACT_WIDTHS,
    WidthRounding,
    WindowPlan,
    batch_windows,
    pad_windows,
    plan_training_windows,
    plan_windows,
)
from ..errors import CmllmError, CmllmRuntimeError, CodedError, Errors, Warnings
from ..hardware import NATIVE_BF16, cpu_capability
from .transfer import gradients_to_torch, to_device, to_heads
from .types import CausalMaskModelT

# In training, a decoder call is split rather than padded by more than this fraction: each
# padded position would cost a forward and a backward pass.
TRAIN_MAX_PADDING = 0.03

# In prediction under bf16 autocast on a CPU, batch widths are rounded up to a multiple of
# this: oneDNN keeps a kernel per input shape, and a stream of Docs of every length grew RSS
# by a third over 20,000 Docs with exact widths; rounded, it stays flat and runs no slower
# (benchmarks/doc_memory.py).
CPU_BF16_WIDTH_MULTIPLE = 32

# Attrs that say how the decoder runs, not what it learned (the config's value wins at load).
RUN_SETTINGS = {"pack": False, "int8": False, "int8_smoothing": DEFAULT_ALPHA}


# torch.profiler labels of the transformer component's parts (benchmarks/gpu_check.py reads
# them): piece encoding, the decoder's forward (window planning included), the copy of its
# output to the heads, its backward, and the adapters' optimizer step.
PROFILE_REGIONS = {
    "pieces": "cmllm.pieces",
    "forward": "cmllm.decoder_forward",
    "to_heads": "cmllm.to_heads",
    "backward": "cmllm.decoder_backward",
    "adapter_step": "cmllm.adapter_step",
}


@dataclass
class CausalMaskBatch(FullTransformerBatch):
    """A FullTransformerBatch whose outputs are already split per Doc.

    Docs are kept apart (no padding to the longest Doc in the batch), so one 20,000-token
    Doc next to short ones costs memory in proportion to its own length. ``doc_gradients``
    carries the gradients on the way back, one array per non-empty Doc.
    """

    doc_gradients: list[Floats3d] | None = None

    def unsplit_by_doc(self, arrays: list[list[Floats3d]]) -> "CausalMaskBatch":
        return CausalMaskBatch(
            spans=self.spans,
            wordpieces=self.wordpieces,
            model_output=self.model_output,
            align=self.align,
            cached_doc_data=self.cached_doc_data,
            doc_gradients=[tensors[0] for tensors in arrays],
        )


class CausalMaskLLM(CausalMaskModelT):
    """The architecture's Thinc model. A subclass so that a damaged saved file gives one
    clear error (E031) instead of whichever decoding error thinc meets first, so that a
    config cannot silently change which hidden states the listeners were trained on, and
    so that the decoder's weights stay fixed between a forward and its backprop."""

    # spaCy's nlp.update calls the transformer's finish_update right after its forward,
    # BEFORE the listeners call its backprop: without care the optimizer would change the
    # weights between forward and backward. Gradient checkpointing recomputes activations
    # in backward with the changed weights (other gradients than without checkpointing),
    # and even without it, thinc swaps the parameters' data, which autograd then reads for
    # part of the backward. So a finish_update that arrives while a backprop is pending is
    # held back and runs right after that backprop.
    _held_optimizer: Any | None = None

    def begin_update(self, X: list[Doc]) -> tuple[FullTransformerBatch, Callable[[FullTransformerBatch], list[Doc]]]:
        output, backprop = super().begin_update(X)

        def backprop_then_update(d_output: FullTransformerBatch) -> list[Doc]:
            d_docs = backprop(d_output)
            optimizer, self._held_optimizer = self._held_optimizer, None
            if optimizer is not None:
                super(CausalMaskLLM, self).finish_update(optimizer)
            return d_docs

        return output, backprop_then_update

    def finish_update(self, optimizer: Any) -> None:
        backbone = self.shims[0]._model
        if isinstance(backbone, Backbone) and backbone.awaiting_backprop:
            self._held_optimizer = optimizer
            return
        super().finish_update(optimizer)

    def from_bytes(self, bytes_data: bytes) -> "CausalMaskLLM":
        # thinc saves the attrs and overwrites the config's with the saved ones on load;
        # keep the config's to compare.
        wanted = self.attrs["hidden_layers"]
        wanted_repeat = self.attrs.get("repeat", 1)
        # Pipelines saved before repetition existed have no "repeat": they ran one copy.
        self.attrs["repeat"] = 1
        # How to run the decoder, not what it learned: the config's values win over the
        # saved ones, so `spacy.load(..., config=...)` can switch them.
        run_settings = {key: self.attrs.get(key, default) for key, default in RUN_SETTINGS.items()}
        try:
            # thinc annotates from_bytes as returning a Model; it returns self.
            loaded = cast(CausalMaskLLM, super().from_bytes(bytes_data))
        except CodedError:
            raise
        except ValueError as err:
            raise CmllmError(Errors.E031.format(why=f"{type(err).__name__}: {err}")) from err
        except (KeyError, TypeError, IndexError, UnicodeDecodeError) as err:
            raise CmllmError(Errors.E031.format(why=f"{type(err).__name__}: {err}")) from err
        _check_hidden_layers(list(loaded.attrs["hidden_layers"]), list(wanted), get_backbone(loaded).n_layers)
        if loaded.attrs["repeat"] != wanted_repeat:
            raise CmllmError(Errors.E091.format(saved=loaded.attrs["repeat"], wanted=wanted_repeat))
        loaded.attrs.update(run_settings)
        check_repeat_fits(loaded)
        return loaded


def _check_hidden_layers(saved: list[int], wanted: list[int], n_layers: int) -> None:
    """Raise E035 if the config's hidden_layers pick other states than the trained ones.

    saved, wanted: indices into (embeddings, layer 1, ..., last layer); -1 and n_layers
        name the same state, and the order of averaged states does not matter.
    n_layers: the decoder's layer count.
    """
    n_states = n_layers + 1

    def resolved(indices: list[int]) -> list[int]:
        return sorted(i % n_states if -n_states <= i < n_states else i for i in indices)

    if resolved(saved) != resolved(wanted):
        raise CmllmError(Errors.E035.format(saved=saved, wanted=wanted))


class _Placeholder(torch.nn.Module):
    """Stands in for the backbone until nlp.initialize() or deserialization loads it."""


class BackboneShim(PyTorchShim):
    """A PyTorchShim whose trainable parameters (the adapters) are stepped by their own
    torch optimizer when the architecture sets one; else by thinc's, as any PyTorchShim.
    (CausalMaskLLM.finish_update makes sure a step never falls between a forward and its
    backprop.)"""

    def __init__(self, *args: Any, adapter_optimizer: AdapterOptimizer | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.adapter_optimizer = adapter_optimizer
        self.stepper: AdapterStepper | None = None

    def finish_update(self, optimizer: Any) -> None:
        if self.adapter_optimizer is None:
            _check_thinc_can_step(self._model)
            with record_function(PROFILE_REGIONS["adapter_step"]):
                return super().finish_update(optimizer)
        if self.stepper is None or self.stepper.module is not self._model:
            self.stepper = AdapterStepper(self.adapter_optimizer, self._model)
        with record_function(PROFILE_REGIONS["adapter_step"]):
            self.stepper.step()


def _check_thinc_can_step(module: torch.nn.Module) -> None:
    """thinc's optimizer steps a torch parameter through an array of its device's kind: a
    parameter on a GPU through cupy. Without cupy that fails deep inside thinc with
    "'NoneType' object is not callable"; say what to do instead (E131)."""
    from thinc.compat import cupy_from_dlpack

    if cupy_from_dlpack is not None:
        return
    on_gpu = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is not None and p.is_cuda]
    if on_gpu:
        raise CmllmRuntimeError(Errors.E131.format(n=len(on_gpu)))


def build_model(
    settings: BackboneSettings,
    *,
    window: int,
    stride: int,
    hidden_layers: Sequence[int],
    add_bos: bool,
    max_batch_pieces: int,
    mixed_precision: bool | None,
    adapter_optimizer: AdapterOptimizer | None = None,
    pack: bool = False,
    int8: bool = False,
    int8_smoothing: float = DEFAULT_ALPHA,
    repeat: int = 1,
) -> CausalMaskModelT:
    shim = BackboneShim(
        _Placeholder(),
        # Module-level functions, not closures: the model must pickle (n_process under spawn).
        serialize_model=_serialize,
        deserialize_model=functools.partial(_deserialize, settings=settings),
        adapter_optimizer=adapter_optimizer,
    )
    return CausalMaskLLM(
        "causal_mask_llm",
        forward,
        init=init,
        shims=[shim],
        dims={"nO": None},
        attrs={
            "settings": settings.to_dict(),
            "window": window,
            "stride": stride,
            "hidden_layers": list(hidden_layers),
            "add_bos": add_bos,
            "max_batch_pieces": max_batch_pieces,
            "mixed_precision": mixed_precision,
            "pack": pack,
            "int8": int8,
            "int8_smoothing": int8_smoothing,
            "repeat": repeat,
        },
    )


def _serialize(backbone: torch.nn.Module) -> bytes:
    if not isinstance(backbone, Backbone):
        raise CmllmError(Errors.E032)
    return backbone.to_bytes()


def _deserialize(_old: Any, data: bytes, _device: Any, *, settings: BackboneSettings) -> Backbone:
    return Backbone.from_bytes(data, settings)


def init(model: CausalMaskModelT, X: list[Doc] | None = None, Y: Any = None) -> CausalMaskModelT:
    """Load the weights. Runs at nlp.initialize(), never at construction."""
    shim = model.shims[0]
    if not isinstance(shim._model, Backbone):
        shim._model = Backbone.load(BackboneSettings.from_dict(model.attrs["settings"]))
    model.set_dim("nO", get_backbone(model).hidden_size, force=True)
    check_repeat_fits(model)
    return model


def check_repeat_fits(model: CausalMaskModelT) -> None:
    """E090 where repetition meets a sliding window that cannot reach back over all copies:
    the last copy would then not see the first, and the causal layers would see less of the
    window than with one copy. Called once the decoder (and its config) is loaded."""
    repeat = model.attrs.get("repeat", 1)
    if repeat == 1:
        return
    config = get_backbone(model).base_model.config
    sliding = getattr(config, "sliding_window", None)
    if sliding is None or getattr(config, "use_sliding_window", True) is False:
        return
    positions = (1 if model.attrs["add_bos"] else 0) + repeat * model.attrs["window"]
    if positions > sliding:
        raise CmllmError(
            Errors.E090.format(repeat=repeat, window=model.attrs["window"], positions=positions, sliding=sliding)
        )


def int8_decoder(model: CausalMaskModelT) -> torch.nn.Module:
    """The int8 copy of the decoder that ``model`` predicts with when attrs["int8"] is set."""
    backbone = get_backbone(model)
    bos_id = backbone.tokenizer.bos_token_id if model.attrs["add_bos"] else None
    smoothing = model.attrs.get("int8_smoothing", DEFAULT_ALPHA)
    return backbone.int8_decoder(smoothing=smoothing, bos_id=bos_id, window=model.attrs["window"])


def get_backbone(model: CausalMaskModelT) -> Backbone:
    backbone = model.shims[0]._model
    if not isinstance(backbone, Backbone):
        raise CmllmError(Errors.E032)
    if not model.has_dim("nO"):
        model.set_dim("nO", backbone.hidden_size)
    return backbone


def forward(
    model: CausalMaskModelT, docs: list[Doc], is_train: bool
) -> tuple[CausalMaskBatch, Callable[[CausalMaskBatch], list[Doc]]]:
    # Before any torch computation in an nlp.pipe(n_process=N) worker (decoder/threads.py).
    settle_worker_threads()
    backbone = get_backbone(model)
    if is_train and model.attrs.get("int8", False):
        raise CmllmError(Errors.E076.format(name="transformer"))
    if is_train:
        # The adapters are about to change: a merged int8 copy would be stale.
        backbone.drop_int8_decoder()
    tokenizer = backbone.tokenizer
    with record_function(PROFILE_REGIONS["pieces"]):
        pieces = backbone.piece_encoder.encode_docs(docs)
    bos_id = tokenizer.bos_token_id if model.attrs["add_bos"] else None
    if is_train:
        # Each piece once: no overlap to compute (and backpropagate) twice.
        plan = plan_training_windows(
            [p.ids for p in pieces],
            window=model.attrs["window"],
            bos_id=bos_id,
            sentence_starts=[_sentence_starts(doc, p) for doc, p in zip(docs, pieces)],
            repeat=model.attrs.get("repeat", 1),
        )
    else:
        plan = plan_windows(
            [p.ids for p in pieces],
            window=model.attrs["window"],
            stride=model.attrs["stride"],
            bos_id=bos_id,
            repeat=model.attrs.get("repeat", 1),
        )
    backbone.train(is_train)
    # Named regions for torch.profiler (near-free without one): where a step's time goes.
    with record_function(PROFILE_REGIONS["forward"]):
        vectors = _run_decoder(model, backbone, plan, is_train)
    with record_function(PROFILE_REGIONS["to_heads"]):
        output = _to_batch(model, docs, pieces, vectors, tokenizer)
    if vectors.requires_grad:
        _check_previous_backprop(backbone)
        backbone.awaiting_backprop = True

    def backprop(d_output: CausalMaskBatch) -> list[Doc]:
        backbone.awaiting_backprop = False
        gradients = d_output.doc_gradients or []
        if gradients and vectors.requires_grad:
            with record_function(PROFILE_REGIONS["backward"]):
                d_vectors = gradients_to_torch([g[0] for g in gradients], like=vectors)
                torch.autograd.backward(vectors, grad_tensors=d_vectors)
        return docs

    return output, backprop


def _sentence_starts(doc: Doc, pieces: TokenPieces) -> numpy.ndarray | None:
    """The piece index of each sentence start, where the doc has sentence boundaries."""
    if not doc.has_annotation("SENT_START"):
        return None
    token_starts = numpy.flatnonzero(doc.to_array("SENT_START") == 1)
    piece_offsets = numpy.concatenate(([0], numpy.cumsum(pieces.lengths)))
    return piece_offsets[token_starts]


def _check_previous_backprop(backbone: Backbone) -> None:
    """Warn once if the previous training batch never called backprop.

    spacy-transformers hands the decoder's backprop to the LAST listener only; when that
    component skips a batch (e.g. `ner` on docs without entity annotation), the decoder
    silently learns nothing from the batch, not even the other listeners' gradients."""
    if backbone.awaiting_backprop and not backbone.warned_no_backprop:
        backbone.warned_no_backprop = True
        warnings.warn(Warnings.W001, stacklevel=3)


def _run_decoder(model: CausalMaskModelT, backbone: Backbone, plan: WindowPlan, is_train: bool) -> torch.Tensor:
    """Run all windows in batches of rows; return one float32 vector per piece, docs
    concatenated in order (the plan's gather order).

    Unpacked, every window is a row of its own and rows of similar length share a call.
    Packed (attrs["pack"]), rows of up to repeat x window + BOS positions hold several windows,
    each attending only to itself (its own positions, BOS sink first, restart at 0): a
    window's copies are one segment, so they see each other."""
    device = backbone.device
    width = backbone.hidden_size
    n_pieces = len(plan.gather_window)
    if n_pieces == 0:
        return torch.zeros((0, width), dtype=torch.float32, device=device)
    int8 = bool(model.attrs.get("int8", False)) and not is_train
    decoder = int8_decoder(model) if int8 else backbone.decoder
    lengths = [len(w) for w in plan.windows]
    pack = bool(model.attrs.get("pack", False))
    # The widest row: one window's copies after one BOS.
    capacity = model.attrs.get("repeat", 1) * model.attrs["window"] + (1 if model.attrs["add_bos"] else 0)
    if pack:
        check_packing_supported(decoder)
        rows = pack_rows(lengths, capacity=capacity)
    else:
        rows = [[i] for i in range(len(lengths))]
    fills = [sum(lengths[i] for i in row) for row in rows]
    # Where each window's first position lands in the flat (sum of batch rows x positions) buffer.
    window_start = numpy.zeros(len(plan.windows), dtype=numpy.int64)
    flat_parts: list[torch.Tensor] = []
    offset = 0
    grad = is_train and backbone.trainable()
    # int8 kernels take float32 activations: no autocast around them.
    enabled = use_bf16_autocast(model.attrs["mixed_precision"], device) and not int8
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
    pad_id = _pad_id(backbone.tokenizer)
    rounded = enabled and device.type == "cpu" and not is_train
    widths = WidthRounding(CPU_BF16_WIDTH_MULTIPLE, ceiling=capacity) if rounded else EXACT_WIDTHS
    with torch.set_grad_enabled(grad), autocast:
        # Packed rows end evenly (pack_rows balances them), so prediction keeps them in as
        # few calls as max_batch_pieces allows: every call re-reads all the weights.
        max_padding = TRAIN_MAX_PADDING if is_train else None
        for batch in batch_windows(
            fills, max_pieces=model.attrs["max_batch_pieces"], max_padding=max_padding, widths=widths
        ):
            batch_rows = [rows[r] for r in batch]
            segments = None
            if any(len(row) > 1 for row in batch_rows):
                packed = pad_packed(plan.windows, batch_rows, pad_id=pad_id, widths=widths)
                ids = packed.input_ids
                segments = segments_to_device(packed.segments, device, move=to_device)
            else:
                # One window per row: the plain padded call computes the same.
                ids, mask = pad_windows([plan.windows[row[0]] for row in batch_rows], pad_id=pad_id, widths=widths)
            ids_t = to_device(ids, device)
            if segments is None:
                # Nothing padded: no mask at all, decided here on the host. The decoder then
                # neither synchronises with the GPU to find out nor builds a 4-D mask, and
                # SDPA may use its flash kernel (it cannot with an explicit mask).
                mask_t = None if mask.all() else to_device(mask, device)
                hidden = _hidden(model, decoder, ids_t, mask_t)
            else:
                hidden = _hidden(model, decoder, ids_t, None, segments=segments)
            longest = hidden.shape[1]
            for r, row in enumerate(batch_rows):
                column = 0
                for window_index in row:
                    window_start[window_index] = offset + r * longest + column
                    column += lengths[window_index]
            flat_parts.append(hidden.reshape(-1, width))
            offset += hidden.shape[0] * longest
        flat = flat_parts[0] if len(flat_parts) == 1 else torch.cat(flat_parts)
        index = to_device(window_start[plan.gather_window] + plan.gather_position, device)
        vectors = flat.index_select(0, index).float()
    return vectors


def use_bf16_autocast(setting: bool | None, device: torch.device) -> bool:
    """None means: where the hardware computes bf16 natively. On a CPU without AVX512-BF16
    or AMX, bf16 autocast is several times SLOWER than float32, so it stays off there; also
    where PyTorch's kernels are held below AVX512 (ATEN_CPU_CAPABILITY), as they then cannot
    use those instructions."""
    if setting is not None:
        return bool(setting)
    try:
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        if device.type == "cpu":
            return cpu_capability() in NATIVE_BF16 and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    except (AttributeError, RuntimeError):
        pass
    return False


def _hidden(
    model: CausalMaskModelT,
    decoder: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    n_layers = len(decoder_layers(decoder))
    layers = resolve_states(model.attrs["hidden_layers"], n_layers)
    # Early exit: the layers above the highest state read would be pure cost. With one state
    # read, the call's last_hidden_state is that state (exit_after drops the final norm below
    # the top layer).
    top = max(max(layers), 1)
    one = len(set(layers)) == 1 and layers[0] == top
    call: Mapping[str, torch.Tensor | dict[str, torch.Tensor] | None]
    if segments is None:
        call = {"attention_mask": mask}
    else:
        call = packed_inputs(decoder, segments)
    with exit_after(decoder, top):
        base_output = decoder(input_ids=ids, use_cache=False, output_hidden_states=not one, **call)
    if one:
        return base_output.last_hidden_state
    states = base_output.hidden_states
    return torch.stack([states[i] for i in layers]).mean(dim=0)


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _to_batch(
    model: CausalMaskModelT, docs: list[Doc], pieces: list[TokenPieces], vectors: torch.Tensor, tokenizer: Any
) -> CausalMaskBatch:
    # One transfer for the batch (none where heads and decoder share a device); per-doc views.
    # (thinc's array types, Ints1d and the like, exist for type checkers only: numpy arrays
    # are cast to them.)
    array = to_heads(vectors, model.ops)
    doc_data: list[TransformerData] = []
    start = 0
    for _doc, doc_pieces in zip(docs, pieces):
        n = len(doc_pieces.ids)
        if n == 0:
            doc_data.append(TransformerData.empty())
            continue
        # thinc's array types have no overload for numpy's new-axis (None) index.
        hidden = array[start : start + n][None]  # type: ignore[call-overload]
        start += n
        wordpieces = WordpieceBatch(
            strings=[tokenizer.convert_ids_to_tokens(doc_pieces.ids.tolist())],
            input_ids=cast(Ints2d, doc_pieces.ids[None].astype("int64")),
            attention_mask=cast(Floats2d, numpy.ones((1, n), dtype="float32")),
            lengths=[n],
            token_type_ids=None,
        )
        align = Ragged(
            model.ops.asarray1i(cast(Ints1d, numpy.arange(n, dtype="int32"))),
            model.ops.asarray1i(cast(Ints1d, doc_pieces.lengths.astype("int32"))),
        )
        doc_data.append(
            TransformerData(wordpieces=wordpieces, model_output=ModelOutput(last_hidden_state=hidden), align=align)
        )
    return CausalMaskBatch(
        spans=[[doc[:]] if len(doc) else [] for doc in docs],
        wordpieces=WordpieceBatch.empty(),
        model_output=ModelOutput(),
        align=Ragged(cast(Ints1d, numpy.zeros((0,), dtype="i")), cast(Ints1d, numpy.zeros((0,), dtype="i"))),
        cached_doc_data=doc_data,
    )
