"""What int8 prediction costs in accuracy and gains in speed, on a trained pipeline's test set.

The same trained pipeline is scored on the same Docs, in one process, with its float decoder
in float32, with bf16 autocast (only where the CPU has native bf16: the pipeline's default
there), and with `int8 = true` (adapters merged, block linear layers in int8). Changes and
speed-ups of int8 are reported against the pipeline's default float precision and against
float32 (the default on CPUs without native bf16). NER is scored with seqeval (strict IOB2,
micro F1) on the gold tokens, as the study scores it, with a 95 % bootstrap interval of
int8's F1 change, paired over documents; POS as tag accuracy; the speed is words/s of
`nlp.pipe` on those Docs, the int8 copy built before the clock.

    python benchmarks/int8_scores.py training/ewt/model-best corpus/ewt/test.spacy --name ewt
    python benchmarks/int8_scores.py MODEL corpus/conll03-w150/test.spacy --name conll03

Each run adds (or replaces) its `--name` entry in benchmarks/results/int8_scores.json and
redraws int8_scores.png.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy
import spacy
import torch
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Corpus, Example

from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.pipeline.model import get_backbone, use_bf16_autocast
from spacy_cmllm.pipeline.scorer import iob2_tags
from spacy_cmllm.provenance import provenance
from experiments.study.bootstrap import paired_difference, resample_weights, span_counts

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "int8_scores.json"
# The bound on what int8 may cost, in F1 points.
MAX_F1_LOSS = 0.5


def pct(value):
    return None if value is None else round(100 * value, 2)


def gold_token_docs(nlp, examples) -> list:
    """Fresh Docs of the reference tokens, so every run predicts (and is scored on) the same tokens."""
    return [Doc(nlp.vocab, words=[t.text for t in eg.reference], spaces=[bool(t.whitespace_) for t in eg.reference]) for eg in examples]


def pipeline_parser(doc: str, results: Path) -> argparse.ArgumentParser:
    """The arguments the int8 benchmarks share: a trained pipeline, a .spacy file of gold
    Docs, and the named entry of a results file to write."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained spacy-cmllm pipeline")
    parser.add_argument("data", type=Path, help="a .spacy file with gold entities and tags")
    parser.add_argument("--name", required=True, help="the entry's name in the results, e.g. ewt or conll03")
    parser.add_argument("--out", type=Path, default=results)
    return parser


def run_header(script: str, argv, args) -> dict:
    """The first fields of a results entry: the command that made it, its pipeline and data."""
    words = argv if argv is not None else sys.argv[1:]
    return {"command": f"python benchmarks/{script} " + " ".join(words), "model": str(args.model), "data": str(args.data)}


def save_entry(out: Path, name: str, entry: dict, draw) -> None:
    """Add (or replace) ``name`` in the results file ``out`` and redraw its PNG with ``draw``."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results[name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    draw(results, out.with_suffix(".png"))


def score(nlp, examples, *, int8: bool, bf16: bool) -> dict:
    """Predict the gold-tokenized Docs and score them; per-document entity counts ride along
    (key "_counts") for the paired bootstrap."""
    model = nlp.get_pipe("transformer").model
    model.attrs["int8"] = int8
    model.attrs["mixed_precision"] = bf16
    docs = gold_token_docs(nlp, examples)
    n_words = sum(len(doc) for doc in docs)
    if int8:
        nlp(examples[0].reference.text)  # builds the merged int8 copy outside the timing
    start = time.perf_counter()
    predicted = list(nlp.pipe(docs))
    seconds = time.perf_counter() - start
    got = Scorer(nlp).score([Example(doc, eg.reference) for doc, eg in zip(predicted, examples)])
    counts = numpy.array([span_counts(iob2_tags(len(doc), eg.reference.ents), iob2_tags(len(doc), doc.ents)) for doc, eg in zip(predicted, examples)])
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
    for ax, metric, title in ((axes[0], "ner_f1", "NER F1 (seqeval strict)"), (axes[1], "words_per_s", "words/s (nlp.pipe)")):
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
    parser = pipeline_parser(__doc__, RESULTS)
    parser.add_argument("--smoothing", type=float, default=None, help="int8_smoothing (SmoothQuant alpha); default: the pipeline's")
    args = parser.parse_args(argv)
    nlp = spacy.load(args.model)
    model = nlp.get_pipe("transformer").model
    if args.smoothing is not None:
        model.attrs["int8_smoothing"] = args.smoothing
    # Read at every call (a v2 pipeline has them too, off): packed, as the shipped configs predict.
    model.attrs["pack"] = True
    device = get_backbone(model).device
    if device.type != "cpu":
        print("int8 prediction is for CPUs; run this without a GPU", file=sys.stderr)
        return 2
    default = "bf16" if use_bf16_autocast(model.attrs["mixed_precision"], device) else "fp32"
    runs = [("fp32", False, False)] + ([("bf16", True, False)] if use_bf16_autocast(None, device) else []) + [("int8", False, True)]
    # Read once: every mode predicts fresh Docs of the same gold tokens.
    examples = list(Corpus(args.data)(nlp))
    modes = {}
    for mode, bf16, int8 in runs:
        modes[mode] = score(nlp, examples, int8=int8, bf16=bf16)
        print(f"{mode}: { {k: v for k, v in modes[mode].items() if k != '_counts'} }", flush=True)
    int8_scores = modes["int8"]
    counts = {mode: row.pop("_counts") for mode, row in modes.items()}
    weights = resample_weights(len(examples))

    def change_interval(against):
        # Paired over documents: both modes are scored on the same resamples.
        diff = paired_difference({0: counts["int8"]}, {0: counts[against]}, weights)
        return [round(100 * v, 2) for v in diff["ci"]]

    def change(key, against):
        if modes[against][key] is None:
            return None
        return round(int8_scores[key] - modes[against][key], 2)

    entry = {
        **run_header("int8_scores.py", argv, args),
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
        "int8_smoothing": model.attrs.get("int8_smoothing", 0.0),
        **provenance(),
    }
    save_entry(args.out, args.name, entry, plot)
    print(json.dumps({k: entry[k] for k in ("default_float", "ner_f1_change", "ner_f1_change_ci95", "tag_acc_change", "speedup", "ner_f1_change_vs_fp32", "ner_f1_change_vs_fp32_ci95", "speedup_vs_fp32", "within_bound")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
