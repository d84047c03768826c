"""The profile stage: nlp.update of the recipe under torch.profiler (host and CUDA
activities), and against the plain peft loop at two batch sizes."""

import argparse
import math
import time
from pathlib import Path

from ..timing import synchronizer
from .measure import TARGETS, compare_training, profile_summary, word_batches
from .recipe import CONFIG, build_initialized, heads_on_device, recipe_overrides, stage_examples
from .report import StageRecord

# Realistic training batches in words: the recipe's (configs/default.cfg: 500) and a larger
# one a GPU can afford. Tiny on --cpu-dry-run (the 7B stages' too).
PROFILE_BATCH_WORDS = (500, 2000)
DRY_BATCH_WORDS = (40,)


def stage_profile(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """SmolLM2-135M, the recipe (configs/default.cfg, bf16 under autocast on CUDA): nlp.update
    under torch.profiler (host and CUDA activities), and against the plain peft loop."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    bf16 = args.device == "cuda"
    sizes = DRY_BATCH_WORDS if args.cpu_dry_run else PROFILE_BATCH_WORDS
    repeats = 1 if args.cpu_dry_run else 5
    gpu_id = heads_on_device(args)
    started = time.perf_counter()
    corpus = Path(args.work) / "corpus"
    overrides = recipe_overrides(args, corpus)
    import spacy
    from spacy.pipeline import TrainablePipe

    from ..pipelines import component_of

    examples = stage_examples(args, spacy.blank("en"), "train", sum(sizes) * 2)
    nlp = build_initialized(CONFIG, overrides, examples)
    examples = stage_examples(args, nlp, "train", sum(sizes) * 2)
    record.update(
        init_seconds=round(time.perf_counter() - started, 1),
        gpu_id=gpu_id,
        heads_ops=type(component_of(nlp, "ner", TrainablePipe).model.ops).__name__,
        batch_words=list(sizes),
        bf16_autocast=bf16,
        targets={k: TARGETS[k] for k in ("update_vs_plain_peft", "update_words_per_s")},
    )
    runs = {}
    for size in sizes:
        batch = word_batches(examples, size)[0]
        runs[str(size)] = compare_training(nlp, batch, device=device, bf16=bf16, repeats=repeats)
        record.update(training=runs)
    # The profile: a few steps of the recipe's batch size, after the warm-ups above.
    batch = word_batches(examples, sizes[0])[0]
    optimizer = nlp.create_optimizer()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = 2 if args.cpu_dry_run else 3
    sync = synchronizer(device)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            nlp.update(batch, sgd=optimizer)
        sync()
        wall = time.perf_counter() - start
    summary = profile_summary(prof, wall_seconds=wall, steps=steps)
    trace = args.out.with_name(args.out.stem + "_profile_trace.json.gz")
    trace.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace))
    best = max(runs.values(), key=lambda run: run["update_words_per_s"])
    meets = {
        "update_vs_plain_peft": all(
            run["update_vs_plain_peft"] >= TARGETS["update_vs_plain_peft"] for run in runs.values()
        ),
        "update_words_per_s": best["update_words_per_s"] >= TARGETS["update_words_per_s"],
    }
    record.update(
        ok=all(math.isfinite(run["update_words_per_s"]) for run in runs.values()),
        profile=summary,
        trace=trace.name,
        meets_targets=meets,
        summary=", ".join(
            f"{size} words: update {run['update_words_per_s']:,.0f} words/s = {run['update_vs_plain_peft']:.2f} of plain peft"
            for size, run in runs.items()
        )
        + f"; device busy {summary['device_busy_fraction']}",
    )
