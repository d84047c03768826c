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
"""

import copy
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
    replace_linears(base.layers)
    unmask_layers(clone, spec)
    return clone


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 per output channel and x int8 per token (dynamic)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
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
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel weights, per-token activations"


def replace_linears(module: nn.Module) -> int:
    """Replace every nn.Linear under ``module`` by an Int8Linear; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
            count += 1
        else:
            count += replace_linears(child)
    return count
