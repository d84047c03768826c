"""A fingerprint of a model's weights, to tell whether a saved pipeline's base is the one found now."""

import hashlib

import numpy
import torch
from torch import nn

_SAMPLES_PER_TENSOR = 4096


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every tensor's name, dtype, shape and up to 4,096 evenly spaced values.

    Sampling keeps this to milliseconds for a 7B model while any other checkpoint, a
    retrained one, or another dtype still gives another fingerprint. Exact values are
    hashed (no sums), so the result does not depend on the device. Adapter weights are
    skipped: this identifies the base, before or after LoRA wrapping.
    """
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        if "lora_" in name:
            continue
        tensor = state[name]
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel() == 0:
            continue
        count = min(flat.numel(), _SAMPLES_PER_TENSOR)
        # Integer spacing: a float linspace rounds past the end of tensors over 2**24 values.
        index = torch.arange(count, dtype=torch.int64) * (flat.numel() - 1) // max(count - 1, 1)
        sample = flat[index.to(flat.device)].cpu()
        if sample.is_floating_point():
            sample = sample.to(torch.float64)
        digest.update(numpy.ascontiguousarray(sample.numpy()).tobytes())
    return digest.hexdigest()[:32]
