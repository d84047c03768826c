"""Where prediction time goes, per precision, and how far int8 can go on this CPU at best.

int8 makes only the decoder's linear products faster; attention and the elementwise work
around it (norms, rotary positions, activations, residual adds, and the per-token
quantization int8 adds) run as before, and so does everything outside torch (spaCy's heads,
Python). This benchmark predicts the same Docs (gold tokens, packed, `nlp.pipe`) in float32,
bf16 autocast where the CPU has native bf16, and int8, under torch's profiler, and splits
each run's wall time into:

- products: the linear layers' matrix products (aten::mm / addmm in float, the int8 kernel
  in int8; unmerged LoRA adapters count here too),
- attention: scaled dot-product attention (or eager attention's batched products and softmax),
- other torch: every other torch operator of the forward,
- outside torch: wall time minus all operators' self time.

Amdahl's law then bounds int8: even with free products its wall time would be what remains,
so `ceiling_over[mode]` = that mode's wall time / (int8's wall time - int8's products) is the
most int8 could gain over `mode` by faster products alone. A ceiling below a speed target
means the target needs the rest of the forward to get faster, not the products.

    python -m benchmarks.int8_profile training/ewt/model-best corpus/ewt/test.spacy --name ewt
    python -m benchmarks.int8_profile MODEL corpus/conll03/test.spacy --docs 60 --name conll03

Each run adds (or replaces) its `--name` entry in benchmarks/results/int8_profile.json and
redraws int8_profile.png. It times: run it on an idle CPU.
"""

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from spacy.training import Corpus
from torch.profiler import ProfilerActivity, profile

from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.pipeline.model import get_backbone, use_bf16_autocast
from spacy_cmllm.provenance import provenance

from . import ROOT
from .named_results import pipeline_parser, run_header, save_entry
from .pipelines import gold_token_docs, int8_capable, pipeline_variant, transformer_of

PROG = "python -m benchmarks.int8_profile"
RESULTS = ROOT / "benchmarks" / "results" / "int8_profile.json"
PARTS = ("products", "attention", "other_torch", "outside_torch")
# Operators of the linear layers' products, float and int8.
PRODUCT_OPS = {"aten::mm", "aten::addmm", "aten::_int_mm", "onednn::qlinear_pointwise"}
# Eager attention's own operators; sdpa's are recognised by name.
ATTENTION_OPS = {"aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax"}


def part_of(op: str) -> str:
    if op in PRODUCT_OPS:
        return "products"
    if op in ATTENTION_OPS or "scaled_dot_product" in op:
        return "attention"
    return "other_torch"


def predict(nlp, examples, *, profiled: bool):
    """Wall seconds of ``nlp.pipe`` over fresh gold-token Docs, and with ``profiled`` the
    operators' self CPU seconds by name."""
    docs = gold_token_docs(nlp.vocab, [eg.reference for eg in examples])
    if not profiled:
        start = time.perf_counter()
        list(nlp.pipe(docs))
        return time.perf_counter() - start, {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        list(nlp.pipe(docs))
        wall = time.perf_counter() - start
    ops: defaultdict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        ops[event.key] += event.self_cpu_time_total / 1e6
    return wall, dict(ops)


def measure(nlp, examples) -> dict:
    """Where ``nlp``'s prediction time goes (a pipeline at one precision, packed)."""
    # Warm-up, which also builds the int8 copy outside the clock.
    predict(nlp, examples[:2], profiled=False)
    wall, _ = predict(nlp, examples, profiled=False)
    profiled_wall, ops = predict(nlp, examples, profiled=True)
    seconds = dict.fromkeys(PARTS, 0.0)
    for op, spent in ops.items():
        seconds[part_of(op)] += spent
    seconds["outside_torch"] = max(0.0, profiled_wall - sum(seconds.values()))
    words = sum(len(eg.reference) for eg in examples)
    top = sorted(ops.items(), key=lambda item: -item[1])[:8]
    return {
        "wall_s": round(wall, 2),
        "words_per_s": round(words / wall, 1),
        "profiled_wall_s": round(profiled_wall, 2),
        "seconds": {part: round(value, 6) for part, value in seconds.items()},
        "shares": {part: round(value / profiled_wall, 3) for part, value in seconds.items()},
        "product_ops": {op: round(spent, 6) for op, spent in ops.items() if op in PRODUCT_OPS},
        "top_ops": [[op, round(spent, 3)] for op, spent in top],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (name, mode, entry["modes"][mode], entry["words"]) for name, entry in results.items() for mode in entry["modes"]
    ]
    colors = {"products": "#3b75af", "attention": "#c9a227", "other_torch": "#999999", "outside_torch": "#dddddd"}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.6))
    for i, (_name, _mode, row, words) in enumerate(rows):
        left = 0.0
        # Profiled seconds per 1,000 words, so entries of different sizes line up.
        scale = 1000.0 / words
        for part in PARTS:
            width = row["seconds"][part] * scale
            ax.barh(i, width, left=left, color=colors[part], label=part if i == 0 else None)
            left += width
        ax.text(left, i, f" {row['words_per_s']:.0f} w/s", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{name} {mode}" for name, mode, _, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("profiled seconds per 1,000 words")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(PARTS), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = pipeline_parser(__doc__, RESULTS, prog=PROG)
    parser.add_argument("--docs", type=int, default=None, help="only the first N documents (default: all)")
    args = parser.parse_args(argv)
    if args.docs is not None and args.docs < 1:
        parser.error("--docs must be at least 1")
    nlp = int8_capable(args.model)
    if nlp is None:
        return 2
    device = get_backbone(transformer_of(nlp).model).device
    examples = list(Corpus(args.data)(nlp))[: args.docs]
    if not examples:
        print(f"{args.data} holds no documents", file=sys.stderr)
        return 2
    runs = (
        [("fp32", False, False)]
        + ([("bf16", True, False)] if use_bf16_autocast(None, device) else [])
        + [("int8", False, True)]
    )
    modes = {}
    for mode, bf16, int8 in runs:
        modes[mode] = measure(pipeline_variant(nlp, int8=int8, mixed_precision=bf16, pack=True), examples)
        print(f"{mode}: {modes[mode]['words_per_s']} words/s; profiled shares {modes[mode]['shares']}", flush=True)
    int8_row = modes["int8"]
    # What int8 would take with free products, on the profiled clock all rows share.
    floor = int8_row["profiled_wall_s"] - int8_row["seconds"]["products"]
    entry = {
        **run_header(PROG, argv, args),
        "docs": len(examples),
        "words": sum(len(eg.reference) for eg in examples),
        "modes": modes,
        "int8_over": {
            mode: round(row["wall_s"] / int8_row["wall_s"], 2) for mode, row in modes.items() if mode != "int8"
        },
        "ceiling_over": {
            mode: round(row["profiled_wall_s"] / floor, 2) for mode, row in modes.items() if mode != "int8"
        },
        "int8_kernel": int8_kernel().name,
        "int8_weight_levels": int8_kernel().weight_levels,
        **provenance(),
    }
    save_entry(args.out, args.name, entry, plot)
    print(json.dumps({k: entry[k] for k in ("docs", "words", "int8_over", "ceiling_over")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
