"""The measurements behind gpu_check's profile, 7B and gaps stages, as importable functions.

* `plain_peft_loop`: the reference a training step is held to: the SAME decoder (its peft
  adapters, unmasked layers and gradient checkpointing), replaying the very decoder calls
  that nlp.update made (same windows, rows, masks, positions, precision), with one linear
  head and torch AdamW on the adapters.
* `profile_summary`: what torch.profiler saw over some steps: the top operators by self
  device and self host time, host<->device copies and synchronisations, the time inside the
  transformer component's named regions (model.PROFILE_REGIONS) against the rest of the step
  (the heads: thinc, on cupy or numpy, and spaCy), and which SDPA kernel ran.
* `SHAPES` / `random_decoder_source`: Llama-2-7B and Mistral-7B shapes with random weights,
  built directly on the device, registered as ``memory:<name>`` sources.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from spacy_cmllm.decoder.packed_attention import SEGMENTS_KWARG
from spacy_cmllm.pipeline.model import PROFILE_REGIONS

# Llama-2-7B and Mistral-7B as their config.json files give them. The vocabulary is the
# tokenizer's (see random_decoder_source); everything else is the published shape.
SHAPES: Dict[str, Dict[str, Any]] = {
    "llama2_7b": dict(
        family="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=10000.0, vocab_size=32000,
    ),
    "mistral_7b": dict(
        family="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096, vocab_size=32000,
    ),
}
# SmolLM2-135M's shape (as its GGUF gives it), for --random-weights: the stages whose numbers
# do not depend on the weights' values run without the model file.
SHAPES["smollm2_135m"] = dict(
    family="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, vocab_size=49152,
)
# The same families at unit-test size, for --cpu-dry-run (GQA and the window kept).
TINY_SHAPES: Dict[str, Dict[str, Any]] = {
    "llama2_7b": dict(SHAPES["llama2_7b"], hidden_size=64, intermediate_size=172, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512),
    "mistral_7b": dict(SHAPES["mistral_7b"], hidden_size=64, intermediate_size=224, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512, sliding_window=16),
}
TINY_SHAPES["smollm2_135m"] = dict(SHAPES["smollm2_135m"], hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)

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


def synchronizer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(repeats: int, sync: Callable[[], None], *fns: Callable[[], Any]) -> List[float]:
    """The median time of each function, run alternately (a drifting machine hits all)."""
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            bucket.append(timed(fn, sync))
    return [statistics.median(bucket) for bucket in times]


def peak_memory(fn: Callable[[], Any], device: torch.device) -> Optional[float]:
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


@contextlib.contextmanager
def recorded_calls(decoder: torch.nn.Module):
    """The keyword arguments of every call of `decoder` inside the block."""
    calls: List[Dict[str, Any]] = []
    hook = decoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
    try:
        yield calls
    finally:
        hook.remove()


def real_positions(kwargs: Dict[str, Any]) -> torch.Tensor:
    """Flat indices of the real (not padding) positions of one recorded decoder call."""
    segments = kwargs.get(SEGMENTS_KWARG)
    mask = kwargs.get("attention_mask")
    if segments is not None:
        real = segments > 0
    elif isinstance(mask, torch.Tensor) and mask.dim() == 2:
        real = mask.bool()
    else:
        real = torch.ones_like(kwargs["input_ids"], dtype=torch.bool)
    return torch.nonzero(real.reshape(-1)).squeeze(1)


def plain_peft_loop(
    decoder: torch.nn.Module,
    calls: Sequence[Dict[str, Any]],
    *,
    hidden_size: int,
    n_labels: int = 50,
    bf16: bool,
    learn_rate: float = 0.0,
) -> Callable[[], float]:
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

    def step():
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


def raw_forward(decoder: torch.nn.Module, calls: Sequence[Dict[str, Any]], *, bf16: bool) -> Callable[[], None]:
    """The recorded prediction calls replayed on the bare decoder, no grad, same autocast."""
    device = next(decoder.parameters()).device

    def run():
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            for kwargs in calls:
                decoder(**kwargs)

    return run


def word_batches(examples: Sequence[Any], size: int) -> List[List[Any]]:
    """Consecutive examples in batches of at least `size` words (the last may be short)."""
    batches: List[List[Any]] = [[]]
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


# ------------------------------------------------------------------ the profile


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


def profile_summary(prof: Any, *, wall_seconds: float, steps: int, top: int = 15) -> Dict[str, Any]:
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
    kernels: Dict[str, float] = {}
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
        "regions_per_step": {key: {k: (v / steps if k != "calls" else v) for k, v in r.items()} for key, r in regions.items()},
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


def sdpa_kernels_of(run: Callable[[], Any], device: torch.device) -> Dict[str, int]:
    """Which SDPA implementations run() used, by the aten operators the profiler saw."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    found = {e.key: int(e.count) for e in prof.key_averages()}
    return {kind: found[op] for op, kind in SDPA_OPS.items() if op in found}


# ------------------------------------------------------------------ 7B shapes


def random_decoder_source(name: str, shape: Dict[str, Any], tokenizer: Any, device: torch.device) -> str:
    """Register ``memory:<name>``: the shape with random weights, built directly on `device`
    in the dtype asked for, with `tokenizer`. The vocabulary is the tokenizer's (SmolLM2's
    49,152 for the 7B shapes, against their 32,000): its ids must index the embedding, and
    the extra 17,152 rows are 1 % of the parameters and cost nothing per token (a lookup;
    no LM head is built)."""
    from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, MistralConfig

    from spacy_cmllm.decoder.load import DTYPES, register_memory_source

    settings = {k: v for k, v in shape.items() if k != "family"}
    settings["vocab_size"] = len(tokenizer)
    config_class = MistralConfig if shape["family"] == "mistral" else LlamaConfig

    def build(*, dtype: str, quantization: Optional[str], attn_implementation: str, lm_head: bool):
        config = config_class(
            **settings,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation=attn_implementation,
        )
        torch.manual_seed(0)
        with torch.device(device):
            model = (AutoModelForCausalLM if lm_head else AutoModel).from_config(config, torch_dtype=DTYPES[dtype])
        if quantization == "4bit":
            quantize_nf4(model)
        return model, tokenizer

    register_memory_source(name, build)
    return f"memory:{name}"


def quantize_nf4(model: torch.nn.Module) -> int:
    """Replace the decoder layers' linear layers by bitsandbytes NF4 ones (double
    quantisation, bf16 compute), as load_in_4bit does when loading a checkpoint. Returns how
    many were replaced."""
    import bitsandbytes as bnb
    from transformers import BitsAndBytesConfig

    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            device = child.weight.device
            quantized = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None,
                compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4", device="meta",
            )
            # Params4bit quantizes on its first move to a CUDA device, wherever it starts.
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            ).to(device)
            if child.bias is not None:
                quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, quantized)
            replaced += 1
    # What peft's prepare_model_for_kbit_training and LoRA dispatch look for.
    model.is_loaded_in_4bit = True
    model.config.quantization_config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
    )
    return replaced


def load_saved_tokenizer(path: Any) -> Any:
    """A tokenizer written by save_pretrained (e.g. `gpu_check.py --save-tokenizer`), repaired
    for labelling as load_decoder repairs every tokenizer."""
    from transformers import AutoTokenizer

    from spacy_cmllm.decoder.tokenizer import repair_tokenizer

    return repair_tokenizer(AutoTokenizer.from_pretrained(path))
