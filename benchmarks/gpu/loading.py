"""The load_bf16 and load_4bit stages: SmolLM2 on the device, and the probe's measurement
that the stock model is causal in every layer and that the spec unmasks exactly its layers."""

import argparse
import time

from .recipe import SPEC
from .report import StageRecord


def stage_load_bf16(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    check_load(record, args, quantization=None)


def stage_load_4bit(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    from spacy_cmllm.errors import CodedError

    try:
        check_load(record, args, quantization="4bit")
    except CodedError as err:
        if args.cpu_dry_run and "E012" in str(err):
            # On the CPU this is the expected, explained refusal.
            record.update(
                ok=None,
                skipped="4-bit NF4 needs CUDA and bitsandbytes",
                error=str(err),
                summary="skipped: E012 as expected on a CPU",
            )
            return
        raise


def check_load(record: StageRecord, args: argparse.Namespace, *, quantization: str | None) -> None:
    """Load in bf16 (optionally 4-bit), then measure the attention pattern on the device."""
    import torch

    from spacy_cmllm import bidirectional_layers, load_decoder, unmask_layers
    from spacy_cmllm.decoder.layout import decoder_layers
    from spacy_cmllm.decoder.probe import check_unmasked
    from spacy_cmllm.decoder.unmask import parse_spec

    device = torch.device(args.device)
    record.update(source=args.source, dtype="bfloat16", quantization=quantization, spec=SPEC)
    started = time.perf_counter()
    # As a Module: transformers wraps PreTrainedModel.to with functools.wraps, whose type mypy
    # does not bind to an instance.
    model: torch.nn.Module = load_decoder(args.source, dtype="bfloat16", quantization=quantization, lm_head=False)[0]
    if quantization is None:
        model.to(device)
    param = next(model.parameters())
    n_4bit = sum(type(module).__name__ == "Linear4bit" for module in model.modules())
    record.update(
        load_seconds=round(time.perf_counter() - started, 2),
        device=str(param.device),
        parameter_dtype=str(param.dtype),
        linear4bit_modules=n_4bit,
        gpu_memory_mb=round(torch.cuda.memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    )
    n_layers = len(decoder_layers(model))
    expected = list(parse_spec(SPEC, n_layers))
    started = time.perf_counter()
    stock = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    handle = unmask_layers(model, SPEC)
    measured = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    record.update(
        n_layers=n_layers, expected_layers=expected, stock_bidirectional_layers=stock, measured_layers=measured
    )
    check_unmasked(model, expected, spec=SPEC)  # E036, with the explanation, on a mismatch
    handle.remove()
    restored = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    ok = param.device.type == device.type and not stock and measured == expected and not restored
    if quantization == "4bit":
        ok = ok and n_4bit > 0
    record.update(
        ok=ok,
        probe_seconds=round(time.perf_counter() - started, 2),
        restored_bidirectional_layers=restored,
        summary=(
            f"{param.device}, {'NF4' if quantization else param.dtype}: stock {'causal' if not stock else f'NOT causal in {stock}'}; "
            f"{SPEC!r} unmasks {f'layers {measured[0]}-{measured[-1]}' if measured else 'no layer'} of {n_layers} (expected {expected[0]}-{expected[-1]})"
        ),
    )
