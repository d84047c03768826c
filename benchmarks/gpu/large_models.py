"""The llama2_7b and mistral_7b stages: 7B shapes with random weights on the device through
the 7B configs' pipelines (bf16, then NF4 where bitsandbytes imports): the unmask probe,
nlp.update words/s and peak memory against the plain loop, predict against the raw forward."""

import argparse
import time
from pathlib import Path
from typing import Any

from .. import ROOT
from .measure import TARGETS, compare_prediction, compare_training, word_batches
from .profiling import DRY_BATCH_WORDS
from .recipe import build_initialized, heads_on_device, stage_examples
from .report import StageRecord
from .shapes import SHAPES, TINY_SHAPES, load_saved_tokenizer, random_decoder_source

# Training batches in words: the 7B configs' own (256) and 1,024.
BIG_BATCH_WORDS = (256, 1024)


def stage_7b(record: StageRecord, args: argparse.Namespace, deadline: float, shape_name: str) -> None:
    """A 7B shape with random weights on the device through the 7B config's pipeline (bf16
    base, its LoRA and gradient checkpointing), then the same in 4-bit NF4 where bitsandbytes
    imports."""
    import gc

    import spacy
    import torch

    from spacy_cmllm import load_decoder
    from spacy_cmllm.decoder.probe import bidirectional_layers
    from spacy_cmllm.decoder.unmask import parse_spec
    from spacy_cmllm.errors import CodedError
    from spacy_cmllm.pipeline.model import get_backbone

    from ..pipelines import transformer_of

    device = torch.device(args.device)
    shapes = TINY_SHAPES if args.cpu_dry_run else SHAPES
    config_path = ROOT / "configs" / ("mistral-7b-qlora.cfg" if shape_name == "mistral_7b" else "llama2-7b-qlora.cfg")
    sizes = DRY_BATCH_WORDS if args.cpu_dry_run else BIG_BATCH_WORDS
    repeats = 1 if args.cpu_dry_run else 3
    gpu_id = heads_on_device(args)
    tokenizer = (
        load_saved_tokenizer(args.tokenizer) if args.random_weights else load_decoder(args.source, lm_head=False)[1]
    )
    source = random_decoder_source(shape_name, shapes[shape_name], tokenizer, device)
    corpus = Path(args.work) / "corpus"
    blank = spacy.blank("en")
    train = stage_examples(args, blank, "train", sum(sizes) * 2)
    dev_docs = [eg.predicted for eg in stage_examples(args, blank, "dev", 60 if args.cpu_dry_run else 3000)]
    record.update(
        shape={**shapes[shape_name], "vocab_size": len(tokenizer)},
        config=config_path.name,
        gpu_id=gpu_id,
        vocab_note="the SmolLM2 tokenizer's 49,152 ids (its ids must index the embedding); the published shape has 32,000",
        targets={k: TARGETS[k] for k in ("update_vs_plain_peft", "memory_vs_plain_peft", "predict_vs_raw_forward")},
    )
    variants = [None, "4bit"]
    results: dict[str, Any] = {}
    for quantization in variants:
        key = "nf4" if quantization else "bf16"
        overrides = {
            "paths.train": str(corpus / "train.spacy"),
            "paths.dev": str(corpus / "dev.spacy"),
            "components.transformer.model.name": source,
            "components.transformer.model.quantization": quantization,
            "components.transformer.model.device": args.device,
            "components.transformer.model.mixed_precision": args.device == "cuda",
        }
        if args.device != "cuda":
            # A bf16 base on a CPU is the slow path for tiny matrices (seconds a step): the
            # dry run tests the stage, not the precision.
            overrides["components.transformer.model.dtype"] = "float32"
        try:
            variant_started = time.perf_counter()
            nlp = build_initialized(config_path, overrides, train)
        except CodedError as err:
            results[key] = {"skipped": str(err)}
            record.update(variants=results)
            continue
        backbone = get_backbone(transformer_of(nlp).model)
        n_layers = backbone.n_layers
        expected = list(parse_spec("0011", n_layers))
        measured = [i for i, b in enumerate(bidirectional_layers(backbone.decoder)) if b]
        result: dict[str, Any] = {
            "init_seconds": round(time.perf_counter() - variant_started, 1),
            "parameters_b": round(sum(p.numel() for p in backbone.decoder.parameters()) / 1e9, 3),
            "linear4bit_modules": sum(type(m).__name__ == "Linear4bit" for m in backbone.decoder.modules()),
            "gradient_checkpointing": bool(getattr(backbone.base_model, "gradient_checkpointing", False)),
            "probe": {"expected": expected, "measured": measured, "ok": measured == expected},
            "weights_memory_mb": round(torch.cuda.memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else None,
        }
        results[key] = result
        record.update(variants=results)
        bf16 = args.device == "cuda"
        result["training"] = {}
        for size in sizes:
            batch = word_batches(train, size)[0]
            result["training"][str(size)] = compare_training(nlp, batch, device=device, bf16=bf16, repeats=repeats)
            record.update(variants=results)
        result["prediction"] = compare_prediction(nlp, dev_docs, device=device, bf16=bf16, repeats=repeats)
        record.update(variants=results)
        del nlp, backbone
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bf16_run = results.get("bf16", {})
    ok = bool(bf16_run.get("probe", {}).get("ok")) and "prediction" in bf16_run
    meets = {}
    if ok:
        meets = {
            "update_vs_plain_peft": all(
                r["update_vs_plain_peft"] >= TARGETS["update_vs_plain_peft"] for r in bf16_run["training"].values()
            ),
            "memory_vs_plain_peft": all(
                (r["memory_vs_plain_peft"] or 0) <= TARGETS["memory_vs_plain_peft"]
                for r in bf16_run["training"].values()
            )
            if device.type == "cuda"
            else None,
            "predict_vs_raw_forward": bf16_run["prediction"]["predict_vs_raw_forward"]
            >= TARGETS["predict_vs_raw_forward"],
        }
    nf4 = results.get("nf4", {})
    record.update(
        ok=ok,
        meets_targets=meets,
        summary=(
            f"bf16: probe {'ok' if ok else 'FAILED'}; "
            + ", ".join(
                f"{size} words {r['update_words_per_s']:,.0f} words/s ({r['update_vs_plain_peft']:.2f} of plain, memory x{r['memory_vs_plain_peft']})"
                for size, r in bf16_run.get("training", {}).items()
            )
            + (
                f"; predict {bf16_run['prediction']['predict_vs_raw_forward']:.2f} of raw"
                if "prediction" in bf16_run
                else ""
            )
            + ("; nf4 skipped: " + nf4["skipped"][:120] if "skipped" in nf4 else ("; nf4 ran" if nf4 else ""))
        ),
    )
