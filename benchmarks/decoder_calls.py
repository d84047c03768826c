"""Spies on the decoder: the calls a pipeline makes, their real (not padding) positions, and
those calls replayed by plain PyTorch, the reference the pipeline is timed against."""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from spacy_cmllm.decoder.packed_attention import SEGMENTS_KWARG


@contextlib.contextmanager
def recorded_calls(decoder: torch.nn.Module) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every call of ``decoder`` inside the block."""
    calls: list[dict[str, Any]] = []
    hook = decoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
    try:
        yield calls
    finally:
        hook.remove()


def real_positions(kwargs: dict[str, Any]) -> torch.Tensor:
    """Flat indices of the real positions (BOS included) of one decoder call: packed rows
    count their segment ids, padded rows their mask; a call without a mask has no padding."""
    segments = kwargs.get(SEGMENTS_KWARG)
    mask = kwargs.get("attention_mask")
    if segments is not None:
        real = segments > 0
    elif isinstance(mask, torch.Tensor) and mask.dim() == 2:
        real = mask.bool()
    else:
        real = torch.ones_like(kwargs["input_ids"], dtype=torch.bool)
    return torch.nonzero(real.reshape(-1)).squeeze(1)


@contextlib.contextmanager
def counted_positions(decoder: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Decoder calls, positions, and real positions inside the block."""
    counted = {"calls": 0, "positions": 0, "real": 0}

    def spy(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        counted["calls"] += 1
        counted["positions"] += int(kwargs["input_ids"].numel())
        counted["real"] += int(real_positions(kwargs).numel())

    hook = decoder.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        yield counted
    finally:
        hook.remove()


def raw_forward(decoder: torch.nn.Module, calls: Sequence[dict[str, Any]], *, bf16: bool) -> Callable[[], None]:
    """The recorded prediction calls replayed on the bare decoder, no grad, same autocast."""
    device = next(decoder.parameters()).device

    def run() -> None:
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            for kwargs in calls:
                decoder(**kwargs)

    return run


def plain_peft_loop(
    decoder: torch.nn.Module,
    calls: Sequence[dict[str, Any]],
    *,
    hidden_size: int,
    n_labels: int = 50,
    bf16: bool,
    learn_rate: float = 0.0,
) -> Callable[[], torch.Tensor]:
    """One training step of a plain PyTorch + peft loop over the recorded decoder `calls`:
    forward through `decoder` under the same autocast, a float32 linear head on the real
    positions, cross-entropy, backward, AdamW on the adapters and the head. Returns the
    step function (it returns the loss, as a tensor: reading it would synchronise).

    The real positions are found once, here, not in every step (the pipeline, too, gathers
    them with indices planned on the host)."""
    device = next(decoder.parameters()).device
    head = torch.nn.Linear(hidden_size, n_labels).to(device)
    params = [p for p in decoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=learn_rate)
    indices = [real_positions(kwargs).to(device) for kwargs in calls]
    targets = [torch.zeros(len(index), dtype=torch.long, device=device) for index in indices]

    def step() -> torch.Tensor:
        decoder.train()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        for kwargs, index, target in zip(calls, indices, targets):
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = decoder(**kwargs).last_hidden_state
            logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, index).float())
            loss = loss + torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step
