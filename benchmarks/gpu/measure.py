"""What the profile, 7B and gaps stages measure: nlp.update and the transformer's predict
against plain PyTorch replaying the very decoder calls they made (decoder_calls), peak GPU
memory, and digests of torch.profiler runs (top operators, copies, synchronisations, the
transformer component's named regions, which SDPA kernel ran)."""

import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from spacy_cmllm.pipeline.model import PROFILE_REGIONS, get_backbone

from ..decoder_calls import plain_peft_loop, raw_forward, real_positions, recorded_calls
from ..pipelines import transformer_of
from ..timing import interleaved, synchronizer, timed

TARGETS = {
    "update_vs_plain_peft": 0.9,
    "update_words_per_s": 10_000.0,
    "memory_vs_plain_peft": 1.1,
    "predict_vs_raw_forward": 0.9,
}

SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
HOST_READS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero")


def peak_memory(fn: Callable[[], Any], device: torch.device) -> float | None:
    """MiB that fn() allocated at its peak above what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def word_batches(examples: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive examples in batches of at least `size` words (the last may be short)."""
    batches: list[list[Any]] = [[]]
    words = 0
    for eg in examples:
        if words >= size:
            batches.append([])
            words = 0
        batches[-1].append(eg)
        words += len(eg.reference)
    return [batch for batch in batches if batch]


def n_words(batch: Iterable[Any]) -> int:
    return sum(len(eg.reference) for eg in batch)


def compare_training(nlp: Any, batch: list[Any], *, device: Any, bf16: bool, repeats: int) -> dict[str, Any]:
    """nlp.update against the plain peft loop over the very decoder calls nlp.update makes on
    `batch`: words/s of each (median of interleaved runs) and peak GPU memory of each."""

    sync = synchronizer(device)
    backbone = get_backbone(transformer_of(nlp).model)
    optimizer = nlp.create_optimizer()
    first = timed(lambda: nlp.update(batch, sgd=optimizer), sync)  # warm-up: first use of every kernel
    with recorded_calls(backbone.decoder) as calls:
        nlp.update(batch, sgd=optimizer)
    plain = plain_peft_loop(backbone.decoder, calls, hidden_size=backbone.hidden_size, bf16=bf16)
    plain()
    update_memory = peak_memory(lambda: nlp.update(batch, sgd=optimizer), device)
    plain_memory = peak_memory(plain, device)
    t_update, t_plain = interleaved(
        repeats, lambda: nlp.update(batch, sgd=optimizer), plain, sync=sync, summary=statistics.median
    )
    words = n_words(batch)
    pieces = sum(int(real_positions(kwargs).numel()) for kwargs in calls)
    n_calls = len(calls)
    del calls, plain
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "batch_docs": len(batch),
        "batch_words": words,
        "decoder_calls": n_calls,
        "real_positions": pieces,
        "first_update_seconds": round(first, 4),
        "update_seconds": round(t_update, 5),
        "plain_seconds": round(t_plain, 5),
        "update_words_per_s": round(words / t_update, 1),
        "plain_words_per_s": round(words / t_plain, 1),
        "update_vs_plain_peft": round(t_plain / t_update, 4),
        "update_peak_mb": None if update_memory is None else round(update_memory, 1),
        "plain_peak_mb": None if plain_memory is None else round(plain_memory, 1),
        "memory_vs_plain_peft": round(update_memory / plain_memory, 4) if update_memory and plain_memory else None,
    }


def compare_prediction(nlp: Any, docs: list[Any], *, device: Any, bf16: bool, repeats: int) -> dict[str, Any]:
    """The transformer component's predict against the raw decoder replaying its calls."""
    sync = synchronizer(device)
    trf = transformer_of(nlp)
    decoder = get_backbone(trf.model).decoder
    trf.predict(docs)
    with recorded_calls(decoder) as calls:
        trf.predict(docs)
    raw = raw_forward(decoder, calls, bf16=bf16)
    raw()
    t_trf, t_raw = interleaved(repeats, lambda: trf.predict(docs), raw, sync=sync, summary=statistics.median)
    words = sum(len(doc) for doc in docs)
    return {
        "docs": len(docs),
        "words": words,
        "decoder_calls": len(calls),
        "transformer_words_per_s": round(words / t_trf, 1),
        "raw_forward_words_per_s": round(words / t_raw, 1),
        "predict_vs_raw_forward": round(t_raw / t_trf, 4),
    }


def _device_time(event: Any) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def _total_device_time(event: Any) -> float:
    for name in ("device_time_total", "cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_summary(prof: Any, *, wall_seconds: float, steps: int, top: int = 15) -> dict[str, Any]:
    """A JSON-able digest of a torch.profiler run over `steps` training steps."""
    averages = prof.key_averages()
    rows = [
        {
            "name": e.key,
            "calls": int(e.count),
            "self_host_ms": round(e.self_cpu_time_total / 1000, 3),
            "self_device_ms": round(_device_time(e) / 1000, 3),
            "host_total_ms": round(e.cpu_time_total / 1000, 3),
        }
        for e in averages
    ]
    by_name = {e.key: e for e in averages}

    def count(predicate: Callable[[str], bool]) -> int:
        return sum(int(e.count) for e in averages if predicate(e.key))

    # Device-side kernels and copies, read from the raw trace (one entry per kernel).
    kernels: dict[str, float] = {}
    copies = {"HtoD": 0, "DtoH": 0, "DtoD": 0}
    try:
        raw = list(prof.profiler.kineto_results.events())
    except Exception:  # a profiler without the raw trace: the kernel counts stay empty
        raw = []
    for event in raw:
        device_type = str(event.device_type())
        if "CUDA" not in device_type:
            continue
        name = event.name()
        for kind in copies:
            if f"Memcpy {kind}" in name:
                copies[kind] += 1
        kernels[name] = kernels.get(name, 0.0) + event.duration_ns() / 1e6
    device_ms = sum(kernels.values())
    cupy_ms = sum(ms for name, ms in kernels.items() if name.startswith("cupy_") or "thinc" in name.lower())
    regions = {
        key: {
            "host_ms": round(by_name[label].cpu_time_total / 1000, 3) if label in by_name else 0.0,
            "device_ms": round(_total_device_time(by_name[label]) / 1000, 3) if label in by_name else 0.0,
            "calls": int(by_name[label].count) if label in by_name else 0,
        }
        for key, label in PROFILE_REGIONS.items()
    }
    wall_ms = wall_seconds * 1000
    component_ms = sum(region["host_ms"] for region in regions.values())
    return {
        "steps": steps,
        "wall_ms_per_step": round(wall_ms / steps, 3),
        "device_kernel_ms_per_step": round(device_ms / steps, 3),
        "device_busy_fraction": round(device_ms / wall_ms, 4) if wall_ms else None,
        "top_by_self_device": sorted(rows, key=lambda r: -r["self_device_ms"])[:top],
        "top_by_self_host": sorted(rows, key=lambda r: -r["self_host_ms"])[:top],
        "top_kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:top]),
        "copies_per_step": {kind: n / steps for kind, n in copies.items()},
        "copy_calls_per_step": count(lambda k: k.startswith("cudaMemcpy")) / steps,
        "synchronisations_per_step": {name: int(by_name[name].count) / steps for name in SYNC_CALLS if name in by_name},
        "host_reads_per_step": {name: int(by_name[name].count) / steps for name in HOST_READS if name in by_name},
        "sdpa_kernels": {kind: int(by_name[op].count) for op, kind in SDPA_OPS.items() if op in by_name},
        "regions_per_step": {
            key: {k: (v / steps if k != "calls" else v) for k, v in r.items()} for key, r in regions.items()
        },
        # The transformer component's named regions (torch: decoder forward and backward,
        # pieces, copies, adapter step) against the rest of the step: the heads in thinc
        # (cupy or numpy) and spaCy's own work.
        "host_ms_per_step": {
            "transformer_regions": round(component_ms / steps, 3),
            "rest_heads_thinc_spacy": round((wall_ms - component_ms) / steps, 3),
        },
        "device_ms_per_step": {
            "cupy_or_thinc_kernels": round(cupy_ms / steps, 3),
            "other_kernels_torch": round((device_ms - cupy_ms) / steps, 3),
        },
    }


def sdpa_kernels_of(run: Callable[[], Any], device: torch.device) -> dict[str, int]:
    """Which SDPA implementations run() used, by the aten operators the profiler saw."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    found = {e.key: int(e.count) for e in prof.key_averages()}
    return {kind: found[op] for op, kind in SDPA_OPS.items() if op in found}
