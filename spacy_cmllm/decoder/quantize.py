"""An int8 copy of a decoder for CPU prediction.

The copy has the LoRA adapters merged into its weights (peft's merge_and_unload on a deep
copy, so the trainable original keeps its adapters), is float32, and has the nn.Linear
layers of its decoder blocks replaced by ``Int8Linear``: weights int8 with one scale per
output channel, activations quantized on the fly with one scale per TOKEN, an exact int8 x
int8 product (below), then rescaled to float32. This is the
scheme of torchao's int8 dynamic-activation / int8-weight mode, without that package.

Per-token scales matter here: PyTorch's ``quantize_dynamic`` scales the activations of a
whole call by one number, so a token's output would depend on the other documents (and the
padding) of its batch, and packed or batched documents would no longer compute what they
compute alone. With per-token scales each token's result is independent of its neighbours.
Embeddings, norms and attention stay float32; the causal mask is removed in the same layers
as in the original. Before quantizing, activation outlier channels are moved into the
weights (decoder/smoothing.py), and layers that read one and the same input (q/k/v_proj,
gate/up_proj) quantize it once between them.

The product runs in oneDNN's int8 linear kernel with prepacked weights
(``torch.ops.onednn.qlinear_pointwise``, the kernel of PyTorch's x86 int8 inference) where
it computes exact products over the full range; ``torch._int_mm`` reorders the weights at
every call, which on a CPU with AMX made its products slower than bf16's. The per-token
scales stay outside the kernel: it is called with an activation scale of 1 and the token
codes shifted to uint8 (zero point 128), and each row is rescaled afterwards.

On CPUs without VNNI (AVX2 only), oneDNN's int8 product multiplies pairs into 16-bit sums
that saturate: with weights in the full int8 range it is then not exact (off by up to 1e5
on extreme inputs). Weights of at most 63 in magnitude keep every pair sum inside 16 bits,
so the copy measures once per process which kernel is exact with which weights (int8_kernel)
and refuses (E077) where none is. ``torch._int_mm`` is the last resort, not a way to keep
8-bit weights there: on a CPU without VNNI it runs a plain loop, exact but far slower than
float32. (Exact 8-bit weights as two halves of at most 64, over a doubled inner dimension,
were tried on AVX2: int8 became slower than float32.)
"""

import copy
from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple, cast

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import find_base_model
from .smoothing import DEFAULT_ALPHA, smooth_for_int8
from .unmask import UnmaskHandle, UnmaskSpec, unmask_layers


def int8_copy(
    decoder: nn.Module,
    *,
    unmask: UnmaskSpec,
    handle: UnmaskHandle | None = None,
    rehook: Callable[[UnmaskHandle], None] | None = None,
    calibration: Sequence[torch.Tensor] = (),
    smoothing: float = DEFAULT_ALPHA,
) -> nn.Module:
    """A merged, int8-quantized, unmasked copy of ``decoder`` for prediction on a CPU.

    decoder: the (possibly peft-wrapped) decoder; it is left as it was.
    unmask: the unmask spec to apply to the copy.
    handle: the original's unmask handle: its hooks are taken off while copying (a deep
        copy would carry hooks bound to the original) and put back; ``rehook`` receives
        the original's new handle.
    calibration: windows of token ids, each (1, n), on which to measure activation ranges
        for smoothing (decoder/smoothing.py); none: quantized without smoothing.
    smoothing: SmoothQuant's alpha, the share of each channel's range moved into the
        weights; 0 turns smoothing off.
    RETURNS: the copy, in eval mode, without gradients.
    """
    device = next(decoder.parameters()).device
    if device.type != "cpu":
        raise CmllmError(Errors.E077.format(why=f"the decoder is on {device}, and this int8 path is for CPUs"))
    if any(
        getattr(m, "quant_state", None) is not None or type(m).__name__ in ("Linear4bit", "Linear8bitLt")
        for m in decoder.modules()
    ):
        raise CmllmError(Errors.E077.format(why="the decoder is already quantized (bitsandbytes)"))
    if not hasattr(torch, "_int_mm"):
        raise CmllmError(
            Errors.E077.format(why=f"PyTorch {torch.__version__} has no int8 matrix product (torch._int_mm)")
        )
    spec = handle.layers if handle is not None and handle.layers else unmask
    # Frozen float32 embeddings are the same in the copy: shared, not copied (smoothing and
    # quantizing change only the blocks' linear layers and norms). Not those under an adapter
    # (a peft "base_layer"): merging writes into them.
    shared = {
        id(m.weight): m.weight
        for name, m in decoder.named_modules()
        if isinstance(m, nn.Embedding)
        and not name.endswith("base_layer")
        and m.weight.dtype == torch.float32
        and not m.weight.requires_grad
    }
    if handle is not None and handle.active:
        handle.remove()
        try:
            clone = copy.deepcopy(decoder, memo=dict(shared))
        finally:
            new = unmask_layers(decoder, spec)
            if rehook is not None:
                rehook(new)
    else:
        clone = copy.deepcopy(decoder, memo=dict(shared))
    merge_and_unload = getattr(clone, "merge_and_unload", None)
    if callable(merge_and_unload):
        clone = merge_and_unload()
    clone = clone.float().eval().requires_grad_(False)
    # Unmasked before calibrating: smoothing must see the activations prediction sees.
    unmask_layers(clone, spec)
    if calibration and smoothing > 0:
        smooth_for_int8(clone, [ids.to(device) for ids in calibration], alpha=smoothing)
    kernel = int8_kernel()
    # find_base_model checked `layers`; torch types any submodule attribute as Tensor | Module.
    replace_linears(
        cast(nn.Module, find_base_model(clone).layers), weight_levels=kernel.weight_levels, kernel=kernel.name
    )
    return clone


class Int8Kernel(NamedTuple):
    """The int8 product this process uses: ``name`` "onednn" (prepacked weights) or
    "int_mm" (torch._int_mm), and the largest weight magnitude it is exact for."""

    name: str
    weight_levels: int


# The order int8_kernel tries them in (why: its docstring).
KERNEL_PREFERENCE = (
    Int8Kernel("onednn", 127),
    Int8Kernel("onednn", 63),
    Int8Kernel("int_mm", 127),
    Int8Kernel("int_mm", 63),
)


def is_exact(kernel: Int8Kernel) -> bool:
    """Whether ``kernel`` computes exact products in this process, on the extreme inputs."""
    check = _onednn_exact if kernel.name == "onednn" else _int_mm_exact
    return check(kernel.weight_levels)


@cache
def int8_kernel() -> Int8Kernel:
    """The fastest int8 product that is exact in this process, tried on the extreme inputs
    where 16-bit pair sums saturate: oneDNN's prepacked kernel with 8-bit, else 7-bit
    weights, else ``torch._int_mm`` with 8-bit, else 7-bit weights. Kernel choice depends on
    the CPU and on ONEDNN_MAX_CPU_ISA, both fixed for a process.

    oneDNN comes first at either width because ``torch._int_mm`` is never the faster one:
    where the CPU has VNNI it reorders the weights at every call, and where it has not
    (AVX2 only) it is exact at 8 bits only because it runs a plain loop: on a 2-core AVX2
    CPU (AMD EPYC) a (512, 576) x (576, 1536) product took 329 ms against 2.9 ms prepacked
    and 6.2 ms in float32."""
    for kernel in KERNEL_PREFERENCE:
        if is_exact(kernel):
            return kernel
    raise CmllmError(
        Errors.E077.format(why="this CPU's int8 matrix product (torch._int_mm) is not exact even with 7-bit weights")
    )


def _extreme_operands(weight_levels: int):
    """(tokens, in) int8 inputs and (in, out) int8 weights, random and at both extremes,
    on which 16-bit pair sums saturate if the kernel has them."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randint(-127, 128, (32, 256), dtype=torch.int8, generator=generator)]
    weights = [torch.randint(-weight_levels, weight_levels + 1, (256, 32), dtype=torch.int8, generator=generator)]
    for sign in (1, -1):
        inputs.append(torch.full((32, 256), 127 * sign, dtype=torch.int8))
        weights.append(torch.full((256, 32), weight_levels * sign, dtype=torch.int8))
    return inputs, weights


def _int_mm_exact(weight_levels: int) -> bool:
    inputs, weights = _extreme_operands(weight_levels)
    for x in inputs:
        for w in weights:
            # float64 holds these integer sums exactly.
            if not torch.equal(torch._int_mm(x, w).double(), x.double() @ w.double()):
                return False
    return True


def _onednn_exact(weight_levels: int) -> bool:
    ops = torch.ops.onednn
    if not (
        torch.backends.mkldnn.is_available() and hasattr(ops, "qlinear_prepack") and hasattr(ops, "qlinear_pointwise")
    ):
        return False
    inputs, weights = _extreme_operands(weight_levels)
    try:
        for w in weights:
            packed = _prepack(w.t().contiguous())
            ones = torch.ones(w.shape[1])
            for x in inputs:
                # Sums up to 256 * 127 * 127 < 2**24: exact in the kernel's float32 output.
                got = _onednn_linear(
                    (x.to(torch.int16) + 128).to(torch.uint8), packed, ones, torch.zeros(w.shape[1], dtype=torch.int64)
                )
                if not torch.equal(got.double(), x.double() @ w.double()):
                    return False
    except (RuntimeError, NotImplementedError):  # a build without this kernel for this CPU
        return False
    return True


def _prepack(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's packed layout of int8 (out, in) weight codes."""
    return torch.ops.onednn.qlinear_prepack(weight, None)


def _onednn_linear(
    codes: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor, zero_points: torch.Tensor
) -> torch.Tensor:
    """float32 (codes - 128) @ W^T * weight_scale, for uint8 token codes (zero point 128) and
    symmetric weights (int64 zero points, all 0, one per output channel)."""
    return torch.ops.onednn.qlinear_pointwise(
        codes, 1.0, 128, packed, weight_scale, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
    )


def quantize_per_token(x: torch.Tensor, *, unsigned: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes of a (tokens, features) float32 matrix, one scale per token (row); with
    ``unsigned``, the same codes + 128 as uint8 (what oneDNN's kernel reads).

    Memory-bound passes over the activations, so as few and as fast as the values allow:
    amax and amin read without a temporary (aminmax along rows was 4-10x slower than the
    two together), and no clamp is needed since |x| / (max|x| / 127) <= 127."""
    high, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    scale = torch.maximum(high, low.neg_()).clamp_(min=1e-12).div_(127.0)
    codes = torch.div(x, scale).round_()
    if unsigned:
        return codes.add_(128.0).to(torch.uint8), scale
    return codes.to(torch.int8), scale


class SharedTokenCodes:
    """The per-token codes of ONE input, shared by the int8 layers that read that same
    tensor (q/k/v_proj; gate/up_proj): quantized once instead of once per layer.

    A hit needs the very tensor object of the last call, unmodified since (its version
    counter), so any other call just quantizes afresh; the entry is dropped after the last
    reader, and read and replaced whole, so interleaved callers cost a recomputation, never
    a wrong result."""

    def __init__(self, readers: int):
        self.readers = readers
        self._entry: tuple[torch.Tensor, int, tuple[torch.Tensor, torch.Tensor], int] | None = None

    def __call__(
        self, x: torch.Tensor, quantize: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self._entry
        if entry is not None and entry[0] is x and entry[1] == x._version:
            left = entry[3] - 1
            self._entry = (x, entry[1], entry[2], left) if left > 0 else None
            return entry[2]
        codes = quantize()
        self._entry = (x, x._version, codes, self.readers - 1) if self.readers > 1 else None
        return codes


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per token (dynamic).

    weight_levels: the largest weight magnitude, 127 where the CPU's int8 product is exact
    over the full range, 63 where it is exact only below (see int8_kernel).
    kernel: "onednn" (prepacked weights) or "int_mm" (torch._int_mm).
    shared: the input's codes, where other layers read the same input."""

    # Buffers, set through register_buffer in __init__: declared for type checkers.
    weight_t: torch.Tensor | None
    weight_scale: torch.Tensor
    bias: torch.Tensor | None
    weight_zero_points: torch.Tensor

    def __init__(
        self,
        linear: nn.Linear,
        *,
        weight_levels: int = 127,
        kernel: str = "int_mm",
        shared: SharedTokenCodes | None = None,
    ):
        super().__init__()
        if kernel not in ("onednn", "int_mm"):
            raise ValueError(f"kernel must be 'onednn' or 'int_mm', not {kernel!r}")
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / float(weight_levels)
        quantized = torch.round(weight / scale[:, None]).clamp(-weight_levels, weight_levels).to(torch.int8)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight_levels = weight_levels
        self.kernel = kernel
        self.shared = shared
        # The int8 weights are kept once: (in, out) as torch._int_mm wants its second operand,
        # or only in oneDNN's packed layout (see int8_weight and __getstate__).
        self.register_buffer("weight_t", None if kernel == "onednn" else quantized.t().contiguous())
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        # The kernel's weight zero points, all 0: made once here, not at every call.
        self.register_buffer("weight_zero_points", torch.zeros(self.out_features, dtype=torch.int64), persistent=False)
        # oneDNN's packed weights are opaque: not a buffer; a copy or a pickle carries the int8
        # codes instead (__getstate__) and packs them again at its first call.
        self._packed: torch.Tensor | None = _prepack(quantized) if kernel == "onednn" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        onednn = self.kernel == "onednn"

        def quantize() -> tuple[torch.Tensor, torch.Tensor]:
            return quantize_per_token(x.reshape(-1, self.in_features).float(), unsigned=onednn)

        codes, scale = self.shared(x, quantize) if self.shared is not None else quantize()
        if onednn:
            if self._packed is None:
                # Without packed weights (a copy, an unpickled layer) the codes are in weight_t.
                assert self.weight_t is not None
                self._packed = _prepack(self.weight_t.t().contiguous())
                self.weight_t = None
            out = _onednn_linear(codes, self._packed, self.weight_scale, self.weight_zero_points).mul_(scale)
            if self.bias is not None:
                out.add_(self.bias)
        else:
            # int_mm never drops its codes.
            assert self.weight_t is not None
            out = torch._int_mm(codes, self.weight_t).mul(scale)
            if self.bias is not None:
                out = torch.addcmul(self.bias, out, self.weight_scale, out=out)
            else:
                out.mul_(self.weight_scale)
        return out.reshape(*shape[:-1], self.out_features)

    def int8_weight(self) -> torch.Tensor:
        """The (out, in) int8 weight codes."""
        if self.weight_t is not None:
            return self.weight_t.t()
        # Read back from the packed copy: identity codes times W^T with unit scales is W^T,
        # exact (integers up to 127 in float32, a kernel chosen for being exact).
        identity = torch.eye(self.in_features).add_(128.0).to(torch.uint8)
        unit = torch.ones(self.out_features)
        # Codes dropped from weight_t live in the packed copy.
        assert self._packed is not None
        with torch.no_grad():
            weight_t = _onednn_linear(identity, self._packed, unit, self.weight_zero_points)
        return weight_t.round_().to(torch.int8).t()

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._packed is not None:
            state["_buffers"] = dict(self._buffers, weight_t=self.int8_weight().t().contiguous())
            state["_packed"] = None
        return state

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights "
            f"(levels ±{self.weight_levels}), per-token activations, {self.kernel} kernel"
            + (", shared input codes" if self.shared else "")
        )


# Sibling layers that a Llama-layout block calls on one and the same tensor.
SHARED_INPUTS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def replace_linears(module: nn.Module, *, weight_levels: int = 127, kernel: str = "int_mm") -> int:
    """Replace every nn.Linear under ``module`` by an Int8Linear; returns how many."""
    shared: dict[str, SharedTokenCodes] = {}
    for names in SHARED_INPUTS:
        siblings = [getattr(module, name, None) for name in names]
        linears = [s for s in siblings if isinstance(s, nn.Linear)]
        if len(linears) == len(siblings) and len({s.in_features for s in linears}) == 1:
            codes = SharedTokenCodes(len(names))
            shared.update((name, codes) for name in names)
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(
                module, name, Int8Linear(child, weight_levels=weight_levels, kernel=kernel, shared=shared.get(name))
            )
            count += 1
        else:
            count += replace_linears(child, weight_levels=weight_levels, kernel=kernel)
    return count
