"""The gaps stage: packed-vs-alone vectors in float32 per TF32 setting and SDPA backend, the
SDPA kernel each kind of call runs, the component against the raw forward with its overhead
split into the component's named regions."""

import argparse
import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Any

from ..pipelines import pipeline_variant, transformer_of
from ..timing import synchronizer
from .measure import compare_prediction, sdpa_kernels_of
from .recipe import CONFIG, build_initialized, recipe_overrides, stage_examples
from .report import StageRecord


def sentence_docs(docs: list[Any], vocab: Any) -> list[Any]:
    """One Doc per sentence (per 25 tokens where a doc has no sentence boundaries)."""
    from spacy.tokens import Doc

    out: list[Any] = []
    for doc in docs:
        if doc.has_annotation("SENT_START"):
            spans = list(doc.sents)
        else:
            spans = [doc[i : i + 25] for i in range(0, len(doc), 25)]
        out.extend(Doc(vocab, words=[t.text for t in span]) for span in spans if len(span))
    return out


def stage_gaps(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """The two CUDA gaps: packed-vs-alone vectors in float32 per TF32 setting and SDPA
    backend, which SDPA kernel each kind of call runs, and the component against the raw
    forward with its overhead split into the component's named regions."""
    import numpy
    import spacy
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    from spacy_cmllm.pipeline.model import PROFILE_REGIONS

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    corpus = Path(args.work) / "corpus"
    overrides = recipe_overrides(args, corpus)
    started = time.perf_counter()
    blank = spacy.blank("en")
    init = stage_examples(args, blank, "train", 100 if args.cpu_dry_run else 300)
    nlp = build_initialized(CONFIG, overrides, init)
    docs = sentence_docs(
        [eg.reference for eg in stage_examples(args, blank, "dev", 60 if args.cpu_dry_run else 3000)], nlp.vocab
    )
    record.update(
        init_seconds=round(time.perf_counter() - started, 1),
        docs=len(docs),
        words=sum(len(d) for d in docs),
        defaults={
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    )

    def vectors(variant: Any) -> list[Any]:
        batch = transformer_of(variant).predict(docs)
        # By key: ModelOutput's fields are attributes only at run time, which its type does not declare.
        states = [d.model_output.get("last_hidden_state") for d in batch.doc_data]
        return [numpy.asarray(s.get() if hasattr(s, "get") else s) for s in states if s is not None and s.size]

    backends = {"default": None, "math": SDPBackend.MATH}
    if cuda:
        backends.update(
            efficient=SDPBackend.EFFICIENT_ATTENTION, cudnn=SDPBackend.CUDNN_ATTENTION, flash=SDPBackend.FLASH_ATTENTION
        )
    differences: dict[str, Any] = {}
    # float32, no autocast, as the speed benchmark's equality check.
    float32 = {pack: pipeline_variant(nlp, pack=pack, mixed_precision=False) for pack in (False, True)}
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True) if cuda else (False,):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for name, backend in backends.items():
                key = f"tf32_{'on' if tf32 else 'off'}/{name}"
                try:
                    with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                        alone, packed = vectors(float32[False]), vectors(float32[True])
                    differences[key] = float(max(numpy.abs(a - b).max() for a, b in zip(alone, packed)))
                except Exception as err:  # a backend that cannot run these calls says why
                    differences[key] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                record.update(packed_vs_alone_max_abs_difference=differences)
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        kernels = {}
        for precision, bf16 in (("fp32", False), ("bf16", True)) if cuda else (("fp32", False),):
            for pack in (False, True):
                trf = transformer_of(pipeline_variant(nlp, pack=pack, mixed_precision=bf16))
                kernels[f"{precision}/{'packed' if pack else 'alone'}"] = sdpa_kernels_of(
                    functools.partial(trf.predict, docs), device
                )
        record.update(sdpa_kernels=kernels)
        # The component against the raw forward, at the pipeline's precision, packed as shipped.
        precision = transformer_of(nlp).model.attrs["mixed_precision"]
        bf16 = bool(precision) if precision is not None else cuda
        ratios = {}
        for label, pack, tf32 in (("packed", True, False), ("alone", False, False)) + (
            (("packed_tf32", True, True),) if cuda else ()
        ):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ratios[label] = compare_prediction(
                pipeline_variant(nlp, pack=pack), docs, device=device, bf16=bf16, repeats=1 if args.cpu_dry_run else 5
            )
            record.update(component_vs_raw=ratios)
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        trf = transformer_of(pipeline_variant(nlp, pack=True))
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        sync = synchronizer(device)
        sync()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            trf.predict(docs)
            sync()
            wall = time.perf_counter() - start
        found = {e.key: e for e in prof.key_averages()}
        regions = {
            key: round(found[label].cpu_time_total / 1000, 3)
            for key, label in PROFILE_REGIONS.items()
            if label in found
        }
        record.update(predict_regions_ms={**regions, "wall": round(wall * 1000, 3)})
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
    numeric = [v for v in differences.values() if isinstance(v, float)]
    record.update(
        ok=bool(numeric) and all(math.isfinite(v) for v in numeric),
        summary=f"packed vs alone (fp32): {', '.join(f'{k} {v:.1e}' for k, v in differences.items() if isinstance(v, float))}; "
        + ", ".join(
            f"{k} {v['predict_vs_raw_forward']:.2f} of raw" for k, v in record.data.get("component_vs_raw", {}).items()
        ),
    )
