"""What int8 prediction costs in accuracy and gains in speed, on a trained pipeline's test set.

The same trained pipeline is scored on the same Docs, in one process, with its float decoder
in float32, with bf16 autocast (only where the CPU has native bf16: the pipeline's default
there), and with `int8 = true` (adapters merged, block linear layers in int8). Changes and
speed-ups of int8 are reported against the pipeline's default float precision and against
float32 (the default on CPUs without native bf16). NER is scored with seqeval (strict IOB2,
micro F1) on the gold tokens, as the study scores it, with a 95 % bootstrap interval of
int8's F1 change, paired over documents; POS as tag accuracy; the speed is words/s of
`nlp.pipe` on those Docs, the int8 copy built before the clock.

    python -m benchmarks.int8_scores training/ewt/model-best corpus/ewt/test.spacy --name ewt
    python -m benchmarks.int8_scores MODEL corpus/conll03-w150/test.spacy --name conll03

Each run adds (or replaces) its `--name` entry in benchmarks/results/int8_scores.json and
redraws int8_scores.png.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.training import Corpus, Example

from experiments.study.bootstrap import paired_difference, resample_weights, span_counts
from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.pipeline.model import get_backbone, use_bf16_autocast
from spacy_cmllm.pipeline.scorer import iob2_tags
from spacy_cmllm.provenance import provenance

from . import ROOT
from .named_results import pipeline_parser, run_header, save_entry
from .pipelines import gold_token_docs, int8_capable, pipeline_variant, transformer_of

PROG = "python -m benchmarks.int8_scores"
RESULTS = ROOT / "benchmarks" / "results" / "int8_scores.json"
# The most F1 that int8 may cost and still be reported within bound, in points.
MAX_F1_LOSS = 0.5


def pct(value):
    return None if value is None else round(100 * value, 2)


def score(nlp: Language, examples: list[Example]) -> dict[str, Any]:
    """Predict the gold-tokenized Docs with ``nlp`` and score them; per-document entity
    counts ride along (key "_counts") for the paired bootstrap."""
    docs = gold_token_docs(nlp.vocab, [eg.reference for eg in examples])
    n_words = sum(len(doc) for doc in docs)
    if transformer_of(nlp).model.attrs["int8"]:
        nlp(examples[0].reference.text)  # builds the merged int8 copy outside the timing
    start = time.perf_counter()
    predicted = list(nlp.pipe(docs))
    seconds = time.perf_counter() - start
    got = Scorer(nlp).score([Example(doc, eg.reference) for doc, eg in zip(predicted, examples)])
    counts = numpy.array(
        [
            span_counts(iob2_tags(len(doc), eg.reference.ents), iob2_tags(len(doc), doc.ents))
            for doc, eg in zip(predicted, examples)
        ]
    )
    return {
        "ner_f1": pct(got.get("ents_seqeval_f", got.get("ents_f"))),
        "ents_f": pct(got.get("ents_f")),
        "tag_acc": pct(got.get("tag_acc")),
        "words": n_words,
        "seconds": round(seconds, 1),
        "words_per_s": round(n_words / seconds, 1),
        "_counts": counts,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, metric, title in (
        (axes[0], "ner_f1", "NER F1 (seqeval strict)"),
        (axes[1], "words_per_s", "words/s (nlp.pipe)"),
    ):
        modes = [m for m in ("fp32", "bf16", "int8") if any(m in results[n]["modes"] for n in names)]
        width = 0.8 / len(modes)
        for k, mode in enumerate(modes):
            color = {"fp32": "#999999", "bf16": "#c9a227", "int8": "#3b75af"}[mode]
            values = [(results[n]["modes"].get(mode) or {}).get(metric) or 0 for n in names]
            xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, values, width, label=mode, color=color)
            for x, v in zip(xs, values):
                ax.text(x, v, f"{v:.1f}" if metric == "ner_f1" else f"{v:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylim(0, 100)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = pipeline_parser(__doc__, RESULTS, prog=PROG)
    parser.add_argument(
        "--smoothing", type=float, default=None, help="int8_smoothing (SmoothQuant alpha); default: the pipeline's"
    )
    args = parser.parse_args(argv)
    nlp = int8_capable(args.model)
    if nlp is None:
        return 2
    model = transformer_of(nlp).model
    device = get_backbone(model).device
    default = "bf16" if use_bf16_autocast(model.attrs["mixed_precision"], device) else "fp32"
    # Packed, as the shipped configs predict.
    shared = {"pack": True, **({} if args.smoothing is None else {"int8_smoothing": args.smoothing})}
    runs = {"fp32": pipeline_variant(nlp, **shared, mixed_precision=False, int8=False)}
    if use_bf16_autocast(None, device):
        runs["bf16"] = pipeline_variant(nlp, **shared, mixed_precision=True, int8=False)
    runs["int8"] = pipeline_variant(nlp, **shared, mixed_precision=False, int8=True)
    # Read once: every mode predicts fresh Docs of the same gold tokens.
    examples = list(Corpus(args.data)(nlp))
    modes = {}
    for mode, variant in runs.items():
        modes[mode] = score(variant, examples)
        print(f"{mode}: { {k: v for k, v in modes[mode].items() if k != '_counts'} }", flush=True)
    int8_scores = modes["int8"]
    counts = {mode: row.pop("_counts") for mode, row in modes.items()}
    weights = resample_weights(len(examples))

    def change_interval(against):
        # Paired over documents: both modes are scored on the same resamples.
        diff = paired_difference({0: counts["int8"]}, {0: counts[against]}, weights)
        assert diff is not None  # None only where the two share no seed; both are seed 0
        return [round(100 * v, 2) for v in diff["ci"]]

    def change(key, against):
        if modes[against][key] is None:
            return None
        return round(int8_scores[key] - modes[against][key], 2)

    entry = {
        **run_header(PROG, argv, args),
        "default_float": default,
        "modes": modes,
        "ner_f1_change": change("ner_f1", default),
        "ner_f1_change_ci95": change_interval(default),
        "tag_acc_change": change("tag_acc", default),
        "speedup": round(int8_scores["words_per_s"] / modes[default]["words_per_s"], 2),
        "ner_f1_change_vs_fp32": change("ner_f1", "fp32"),
        "ner_f1_change_vs_fp32_ci95": change_interval("fp32"),
        "docs": len(examples),
        "entities": int(counts["fp32"][:, 2].sum()),
        "speedup_vs_fp32": round(int8_scores["words_per_s"] / modes["fp32"]["words_per_s"], 2),
        "within_bound": modes[default]["ner_f1"] - int8_scores["ner_f1"] <= MAX_F1_LOSS,
        # 127: 8-bit weights; 63: 7-bit, where this CPU's int8 product saturates above.
        "int8_weight_levels": int8_kernel().weight_levels,
        "int8_kernel": int8_kernel().name,
        "int8_smoothing": transformer_of(runs["int8"]).model.attrs.get("int8_smoothing", 0.0),
        **provenance(),
    }
    save_entry(args.out, args.name, entry, plot)
    print(
        json.dumps(
            {
                k: entry[k]
                for k in (
                    "default_float",
                    "ner_f1_change",
                    "ner_f1_change_ci95",
                    "tag_acc_change",
                    "speedup",
                    "ner_f1_change_vs_fp32",
                    "ner_f1_change_vs_fp32_ci95",
                    "speedup_vs_fp32",
                    "within_bound",
                )
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
