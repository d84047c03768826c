"""Fused elementwise kernels for the int8 copy (decoder/quantize.py), built by torch.compile.

Once the int8 products run in oneDNN's kernel, most of the int8 copy's time goes to
memory-bound elementwise passes around them: per-token quantization (row ranges, divide,
round, shift), the per-token rescale and bias after each product, RMSNorm and SiLU. Eager
PyTorch reads and writes the activations once per operation; Inductor fuses each group into
one or two passes. Only these small pure functions are compiled, never a module: the
compiled code is the same for every layer (weights are arguments), so the whole copy
compiles once per process (seconds, cached on disk by Inductor), and the int8 products stay
in the eager oneDNN call, whose prepacked weights Inductor cannot take as graph inputs.

Compiling needs a C++ compiler. Where it fails (no compiler, an unsupported platform) the
same functions run eagerly, with one warning (W002); ``TORCHDYNAMO_DISABLE=1`` runs them
eagerly without one.
"""

import warnings
from functools import lru_cache
from typing import Callable, NamedTuple, Optional, Tuple

import torch
from torch import nn

from ..errors import Warnings


def quantize_rows(x: torch.Tensor, unsigned: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """int8 codes of a (tokens, features) float32 matrix with one scale per row; with
    ``unsigned``, codes + 128 as uint8. The same arithmetic as quantize.quantize_per_token."""
    scale = torch.maximum(x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True).neg()).clamp(min=1e-12) / 127.0
    codes = torch.round(x / scale)
    if unsigned:
        return (codes + 128.0).to(torch.uint8), scale
    return codes.to(torch.int8), scale


def rescale(out: torch.Tensor, row_scale: torch.Tensor, col_scale: Optional[torch.Tensor],
            bias: Optional[torch.Tensor], silu: bool) -> torch.Tensor:
    """float32 out * row_scale (* col_scale) (+ bias), then SiLU where asked."""
    y = out.float() * row_scale
    if col_scale is not None:
        y = y * col_scale
    if bias is not None:
        y = y + bias
    return torch.nn.functional.silu(y) if silu else y


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm: weight * x / sqrt(mean(x^2) + eps), computed in float32."""
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class ElementwiseKernels(NamedTuple):
    quantize: Callable[..., Tuple[torch.Tensor, torch.Tensor]]
    rescale: Callable[..., torch.Tensor]
    rms_norm: Callable[..., torch.Tensor]
    compiled: bool


EAGER = ElementwiseKernels(quantize_rows, rescale, rms_norm, compiled=False)


@lru_cache(maxsize=None)
def elementwise_kernels() -> ElementwiseKernels:
    """The compiled kernels, tried once per process on small inputs (which also compiles
    them, for any number of rows); the eager functions where compiling fails."""
    # dynamic: one graph for every number of tokens, not one per window length.
    kernels = ElementwiseKernels(
        torch.compile(quantize_rows, dynamic=True),
        torch.compile(rescale, dynamic=True),
        torch.compile(rms_norm, dynamic=True),
        compiled=True,
    )
    x = torch.randn(3, 8)
    try:
        for unsigned in (True, False):
            kernels.quantize(x, unsigned)
        kernels.rescale(x, x[:, :1], None, None, False)
        kernels.rms_norm(x, torch.ones(8), 1e-6)
    except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
        warnings.warn(Warnings.W002.format(error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
        return EAGER
    return kernels


class FusedRMSNorm(nn.Module):
    """A Llama-layout RMSNorm computed by the fused kernel (same weight, same epsilon)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight = norm.weight
        self.variance_epsilon = float(norm.variance_epsilon)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return elementwise_kernels().rms_norm(hidden_states, self.weight, self.variance_epsilon)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}, fused"


# Norm classes whose forward is exactly rms_norm above (Gemma's, with 1 + weight, is not).
RMS_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm")


def fuse_rms_norms(module: nn.Module) -> int:
    """Replace the Llama-layout RMSNorms under ``module`` by FusedRMSNorm; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if type(child).__name__ in RMS_NORMS and hasattr(child, "variance_epsilon"):
            setattr(module, name, FusedRMSNorm(child))
            count += 1
        else:
            count += fuse_rms_norms(child)
    return count
