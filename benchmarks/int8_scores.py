"""What int8 prediction costs in accuracy and gains in speed, on a trained pipeline's test set.

The same trained pipeline is scored twice on the same Docs, in one process: with its float
decoder (at the pipeline's own precision: bf16 autocast where the CPU has native bf16, else
float32) and with `int8 = true` (CausalMaskLLM.v3: adapters merged, block linear layers in
int8). NER is scored with seqeval (strict IOB2, micro F1), as the sweep scores it; POS as
tag accuracy; the speed is words/s of `nlp.evaluate`, the int8 copy built before the clock.

    python benchmarks/int8_scores.py training/ewt/model-best corpus/ewt/test.spacy --name ewt
    python benchmarks/int8_scores.py MODEL corpus/conll03-w150/test.spacy --name conll03

Each run adds (or replaces) its `--name` entry in benchmarks/results/int8_scores.json and
redraws int8_scores.png.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import spacy
import torch
from spacy.training import Corpus

import spacy_cmllm
from spacy_cmllm.pipeline.model import get_backbone, use_bf16_autocast

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "int8_scores.json"
# The bound on what int8 may cost, in F1 points.
MAX_F1_LOSS = 0.5


def pct(value):
    return None if value is None else round(100 * value, 2)


def score(nlp, path: Path, *, int8: bool) -> dict:
    model = nlp.get_pipe("transformer").model
    model.attrs["int8"] = int8
    examples = list(Corpus(path)(nlp))
    n_words = sum(len(eg.reference) for eg in examples)
    if int8:
        nlp(examples[0].reference.text)  # builds the merged int8 copy outside the timing
    start = time.perf_counter()
    got = nlp.evaluate(examples)
    seconds = time.perf_counter() - start
    return {
        "ner_f1": pct(got.get("ents_seqeval_f", got.get("ents_f"))),
        "ents_f": pct(got.get("ents_f")),
        "tag_acc": pct(got.get("tag_acc")),
        "words": n_words,
        "seconds": round(seconds, 1),
        "words_per_s": round(n_words / seconds, 1),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    width = 0.38
    for ax, metric, title in ((axes[0], "ner_f1", "NER F1 (seqeval strict)"), (axes[1], "words_per_s", "words/s (nlp.evaluate)")):
        for k, (mode, color) in enumerate((("float", "#999999"), ("int8", "#3b75af"))):
            values = [results[n][mode][metric] or 0 for n in names]
            xs = [i + (k - 0.5) * width for i in range(len(names))]
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a trained spacy-cmllm pipeline")
    parser.add_argument("data", type=Path, help="a .spacy file with gold entities and tags")
    parser.add_argument("--name", required=True, help="the entry's name in the results, e.g. ewt or conll03")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    nlp = spacy.load(args.model)
    model = nlp.get_pipe("transformer").model
    # Read at every call (a v2 pipeline has them too, off): packed, as the shipped configs predict.
    model.attrs["pack"] = True
    device = get_backbone(model).device
    if device.type != "cpu":
        print("int8 prediction is for CPUs; run this without a GPU", file=sys.stderr)
        return 2
    float_scores = score(nlp, args.data, int8=False)
    print(f"float: {float_scores}", flush=True)
    int8_scores = score(nlp, args.data, int8=True)
    print(f"int8:  {int8_scores}", flush=True)
    entry = {
        "command": "python benchmarks/int8_scores.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "data": str(args.data),
        "float_precision": "bf16 autocast" if use_bf16_autocast(model.attrs["mixed_precision"], device) else "float32",
        "float": float_scores,
        "int8": int8_scores,
        "ner_f1_change": round(int8_scores["ner_f1"] - float_scores["ner_f1"], 2),
        "tag_acc_change": None if float_scores["tag_acc"] is None else round(int8_scores["tag_acc"] - float_scores["tag_acc"], 2),
        "speedup": round(int8_scores["words_per_s"] / float_scores["words_per_s"], 2),
        "within_bound": float_scores["ner_f1"] - int8_scores["ner_f1"] <= MAX_F1_LOSS,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
        },
        "versions": {"torch": torch.__version__, "spacy": spacy.__version__, "spacy_cmllm": spacy_cmllm.__version__},
    }
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps({k: entry[k] for k in ("ner_f1_change", "tag_acc_change", "speedup", "within_bound")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
