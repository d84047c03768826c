"""Moving the decoder's output to the heads and their gradients back, across devices.

The heads (tagger, bio_tagger, ner) compute with thinc, on the arrays of their ops: numpy on
a CPU, cupy under ``spacy train --gpu-id N`` (CupyOps). The decoder computes with torch on
its own device (``device = null`` picks CUDA when torch sees one, with or without cupy). So:

* heads on numpy, decoder on CPU: no copy at all (numpy shares the tensor's memory);
* heads on numpy, decoder on CUDA (cupy not installed): one copy to the host per batch, and
  one copy of the gradients back;
* heads on cupy, decoder on the same GPU: no copy, the arrays are shared through DLPack
  (thinc's ``torch2xp`` / ``xp2torch``);
* heads on cupy, decoder elsewhere (a CPU or another GPU): one copy per batch each way.

The decoder's output is always float32 on the heads' side: bf16 and fp16 tensors have no
numpy type, and the heads train in float32.
"""

from collections.abc import Sequence

import numpy
import torch
from thinc.api import NumpyOps, Ops, get_array_module, torch2xp, xp2torch
from thinc.types import ArrayXd

from ..errors import CmllmRuntimeError, Errors

_HOST_OPS = NumpyOps()


def to_device(array: numpy.ndarray, device: torch.device) -> torch.Tensor:
    """A host array as a tensor on `device`. To a GPU through pinned memory without waiting:
    a copy from ordinary (pageable) memory first waits for everything queued on the GPU, so
    each decoder call's inputs would stall the host until the previous call had finished."""
    tensor = torch.from_numpy(numpy.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    # The caching host allocator keeps the pinned block until the copy has run.
    return tensor.pin_memory().to(device, non_blocking=True)


def heads_device(ops: Ops) -> torch.device:
    """The torch device where the arrays of `ops` live: the CPU for numpy ops, the current
    cupy device for cupy ops (require_gpu(N) makes N current)."""
    xp = ops.xp
    if xp is numpy:
        return torch.device("cpu")
    return torch.device("cuda", int(xp.cuda.Device().id))


def to_heads(tensor: torch.Tensor, ops: Ops) -> ArrayXd:
    """The decoder's output `tensor` as a float32 array of the kind `ops` computes with.

    At most one transfer for the whole tensor: callers slice the result per doc, and the
    slices are views. The result may share memory with the tensor (as numpy's view of a CPU
    tensor always did); it is detached from autograd.
    """
    tensor = tensor.detach()
    if tensor.dtype != torch.float32:
        # Cast where the tensor is, before any copy: bf16 cannot become numpy, and a float32
        # copy over the bus is what the heads need anyway.
        tensor = tensor.float()
    device = heads_device(ops)
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "a CPU-only build" if torch.version.cuda is None else "it sees no GPU"
        raise CmllmRuntimeError(Errors.E070.format(device=device.index, torch_version=torch.__version__, why=why))
    tensor = tensor.to(device).contiguous()
    # torch2xp shares a CUDA tensor with cupy through DLPack; with NumpyOps it is .numpy().
    return torch2xp(tensor, ops=_HOST_OPS if device.type == "cpu" else ops)


def gradients_to_torch(gradients: Sequence[ArrayXd], like: torch.Tensor) -> torch.Tensor:
    """The per-doc gradients (each (n_i, width), numpy or cupy) concatenated in order, as
    one tensor on the device and of the dtype of `like` (the decoder's output).

    Through thinc's xp2torch: numpy and cupy arrays are shared with torch through DLPack,
    then copied once if the decoder is on another device (numpy gradients to the decoder's
    GPU when cupy is not installed).
    """
    xp = get_array_module(gradients[0])
    # A fresh contiguous array (as concatenate always makes): the tensor may share its memory.
    flat = xp.concatenate(gradients)
    return xp2torch(flat, device=like.device).to(dtype=like.dtype)
