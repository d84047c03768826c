"""An int8 copy of a decoder for CPU prediction.

The copy has the LoRA adapters merged into its weights (peft's merge_and_unload on a deep
copy, so the trainable original keeps its adapters), is float32, and has the nn.Linear
layers of its decoder blocks replaced by ``Int8Linear``: weights int8 with one scale per
output channel, activations quantized on the fly with one scale per TOKEN, an exact int8 x
int8 -> int32 matrix product (``torch._int_mm``), then rescaled to float32. This is the
scheme of torchao's int8 dynamic-activation / int8-weight mode, without that package.

Per-token scales matter here: PyTorch's ``quantize_dynamic`` scales the activations of a
whole call by one number, so a token's output would depend on the other documents (and the
padding) of its batch, and packed or batched documents would no longer compute what they
compute alone. With per-token scales each token's result is independent of its neighbours.
Embeddings, norms and attention stay float32; the causal mask is removed in the same layers
as in the original.

On CPUs without VNNI (AVX2 only), oneDNN's int8 product multiplies pairs into 16-bit sums
that saturate: with weights in the full int8 range ``torch._int_mm`` is then NOT exact (off by
up to 1e5 on extreme inputs). Weights of at most 63 in magnitude keep every pair sum inside 16
bits, so the copy measures once per process whether the product is exact at 127, and uses
7-bit weight levels where it is not, or refuses (E077) where neither is exact.
"""

import copy
from functools import lru_cache
from typing import Callable, Optional

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import find_base_model
from .unmask import UnmaskHandle, UnmaskSpec, unmask_layers


def int8_copy(
    decoder: nn.Module,
    *,
    unmask: UnmaskSpec,
    handle: Optional[UnmaskHandle] = None,
    rehook: Optional[Callable[[UnmaskHandle], None]] = None,
) -> nn.Module:
    """A merged, int8-quantized, unmasked copy of ``decoder`` for prediction on a CPU.

    decoder: the (possibly peft-wrapped) decoder; it is left as it was.
    unmask: the unmask spec to apply to the copy.
    handle: the original's unmask handle: its hooks are taken off while copying (a deep
        copy would carry hooks bound to the original) and put back; ``rehook`` receives
        the original's new handle.
    RETURNS: the copy, in eval mode, without gradients.
    """
    device = next(decoder.parameters()).device
    if device.type != "cpu":
        raise CmllmError(Errors.E077.format(why=f"the decoder is on {device}, and this int8 path is for CPUs"))
    if any(getattr(m, "quant_state", None) is not None or type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in decoder.modules()):
        raise CmllmError(Errors.E077.format(why="the decoder is already quantized (bitsandbytes)"))
    if not hasattr(torch, "_int_mm"):
        raise CmllmError(Errors.E077.format(why=f"PyTorch {torch.__version__} has no int8 matrix product (torch._int_mm)"))
    spec = handle.layers if handle is not None and handle.layers else unmask
    if handle is not None and handle.active:
        handle.remove()
        try:
            clone = copy.deepcopy(decoder)
        finally:
            new = unmask_layers(decoder, spec)
            if rehook is not None:
                rehook(new)
    else:
        clone = copy.deepcopy(decoder)
    if callable(getattr(clone, "merge_and_unload", None)):
        clone = clone.merge_and_unload()
    clone = clone.float().eval().requires_grad_(False)
    base = find_base_model(clone)
    replace_linears(base.layers, weight_levels=exact_weight_levels())
    unmask_layers(clone, spec)
    return clone


WEIGHT_LEVEL_CHOICES = (127, 63)


@lru_cache(maxsize=None)
def exact_weight_levels() -> int:
    """The largest weight magnitude (127 or 63) for which this process's ``torch._int_mm``
    computes int8 x int8 products exactly, tried on the extreme inputs where 16-bit pair
    sums saturate. Kernel choice depends on the CPU and on ONEDNN_MAX_CPU_ISA, both fixed
    for a process."""
    for levels in WEIGHT_LEVEL_CHOICES:
        if _int_mm_exact(levels):
            return levels
    raise CmllmError(Errors.E077.format(why="this CPU's int8 matrix product (torch._int_mm) is not exact even with 7-bit weights"))


def _int_mm_exact(weight_levels: int) -> bool:
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randint(-127, 128, (32, 256), dtype=torch.int8, generator=generator)]
    weights = [torch.randint(-weight_levels, weight_levels + 1, (256, 32), dtype=torch.int8, generator=generator)]
    for sign in (1, -1):
        inputs.append(torch.full((32, 256), 127 * sign, dtype=torch.int8))
        weights.append(torch.full((256, 32), weight_levels * sign, dtype=torch.int8))
    for x in inputs:
        for w in weights:
            # float64 holds these integer sums exactly.
            if not torch.equal(torch._int_mm(x, w).double(), x.double() @ w.double()):
                return False
    return True


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per token (dynamic).

    weight_levels: the largest weight magnitude, 127 where the CPU's int8 product is exact
    over the full range, 63 where it is exact only below (see exact_weight_levels)."""

    def __init__(self, linear: nn.Linear, *, weight_levels: int = 127):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / float(weight_levels)
        quantized = torch.round(weight / scale[:, None]).clamp(-weight_levels, weight_levels).to(torch.int8)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight_levels = weight_levels
        # (in, out), as torch._int_mm wants its second operand.
        self.register_buffer("weight_t", quantized.t().contiguous())
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).float()
        # The quantize and rescale steps are memory-bound passes over the activations, done
        # in place where the values allow. abs().amax() rather than an inf-norm: the same
        # values, and on CPUs the norm's reduction is over ten times slower than the copy.
        scale = flat.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127.0)
        quantized = torch.div(flat, scale).round_().clamp_(-127, 127).to(torch.int8)
        out = torch._int_mm(quantized, self.weight_t).mul(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights "
                f"(levels ±{self.weight_levels}), per-token activations")


def replace_linears(module: nn.Module, *, weight_levels: int = 127) -> int:
    """Replace every nn.Linear under ``module`` by an Int8Linear; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child, weight_levels=weight_levels))
            count += 1
        else:
            count += replace_linears(child, weight_levels=weight_levels)
    return count
