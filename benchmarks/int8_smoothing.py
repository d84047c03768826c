"""How far int8 prediction strays from float32, per SmoothQuant alpha (`int8_smoothing`).

A trained pipeline predicts the same Docs in float32 (no autocast) and in int8 with each
alpha; for every alpha it reports, against the float32 run: the mean relative error of the
transformer's token vectors, the share of tokens whose NER label (IOB + type) or tag
changes, and NER F1 / tag accuracy against gold. Disagreement with float32 is the quantity
int8 controls; F1 on a small dev set moves by more than that from a handful of entities, so
choose alpha on the first and report the second.

    python -m benchmarks.int8_smoothing training/ewt/model-best corpus/ewt/dev.spacy --alphas 0,0.3,0.5,0.65 --name ewt-dev

Each run adds (or replaces) its `--name` entry in benchmarks/results/int8_smoothing.json
and redraws int8_smoothing.png. Accuracy only: no timings, so it may share the CPU.
"""

import sys
from pathlib import Path

import numpy
import spacy
from spacy.scorer import Scorer
from spacy.training import Corpus, Example

from spacy_cmllm.decoder.quantize import int8_kernel
from spacy_cmllm.provenance import provenance

from . import ROOT
from .named_results import pipeline_parser, run_header, save_entry
from .pipelines import gold_token_docs, pipeline_variant

PROG = "python -m benchmarks.int8_smoothing"
RESULTS = ROOT / "benchmarks" / "results" / "int8_smoothing.json"


def predict(nlp, examples, *, int8: bool, alpha: float):
    """The Docs ``nlp`` predicts, packed and without autocast, in int8 with smoothing
    ``alpha`` or in float32."""
    variant = pipeline_variant(nlp, int8=int8, int8_smoothing=alpha, mixed_precision=False, pack=True)
    # The decoder states are compared: doc_cleaner must not drop them.
    return list(
        variant.pipe(
            gold_token_docs(nlp.vocab, [eg.reference for eg in examples]), batch_size=64, disable=["doc_cleaner"]
        )
    )


def compare(nlp, examples, reference, predicted) -> dict:
    errors = []
    for ref, got in zip(reference, predicted):
        a, b = ref._.trf_data.model_output.last_hidden_state, got._.trf_data.model_output.last_hidden_state
        if a.size:
            errors.append(float(numpy.linalg.norm(a - b) / numpy.linalg.norm(a)))
    pairs = [(t, u) for ref, got in zip(reference, predicted) for t, u in zip(ref, got)]
    scores = Scorer(nlp).score([Example(got, eg.reference) for got, eg in zip(predicted, examples)])
    return {
        "vector_relative_error": round(float(numpy.mean(errors)), 4),
        "ner_label_changed": round(
            float(numpy.mean([(t.ent_iob_, t.ent_type_) != (u.ent_iob_, u.ent_type_) for t, u in pairs])), 4
        ),
        "tag_changed": round(float(numpy.mean([t.tag_ != u.tag_ for t, u in pairs])), 4),
        "ner_f1": round(100 * scores.get("ents_seqeval_f", scores.get("ents_f") or 0.0), 2),
        "tag_acc": None if scores.get("tag_acc") is None else round(100 * scores["tag_acc"], 2),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for name, entry in results.items():
        alphas = [float(a) for a in entry["alphas"]]
        rows = [entry["alphas"][a] for a in entry["alphas"]]
        axes[0].plot(alphas, [r["vector_relative_error"] for r in rows], "o-", label=name)
        axes[1].plot(alphas, [100 * r["ner_label_changed"] for r in rows], "o-", label=f"{name} NER")
        axes[1].plot(alphas, [100 * r["tag_changed"] for r in rows], "s--", label=f"{name} tag")
    axes[0].set_title("token vectors: relative error vs float32", fontsize=9)
    axes[1].set_title("% tokens whose label changes vs float32", fontsize=9)
    for ax in axes:
        ax.set_xlabel("int8_smoothing (SmoothQuant alpha)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = pipeline_parser(__doc__, RESULTS, prog=PROG)
    parser.add_argument("--alphas", default="0,0.3,0.5,0.65", help="comma-separated int8_smoothing values")
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")]
    nlp = spacy.load(args.model)
    examples = list(Corpus(args.data)(nlp))
    reference = predict(nlp, examples, int8=False, alpha=0.0)
    float32 = compare(nlp, examples, reference, reference)
    print(f"float32: F1 {float32['ner_f1']}, tag acc {float32['tag_acc']}", flush=True)
    rows = {}
    for alpha in alphas:
        rows[str(alpha)] = compare(nlp, examples, reference, predict(nlp, examples, int8=True, alpha=alpha))
        print(f"int8, alpha {alpha}: {rows[str(alpha)]}", flush=True)
    entry = {
        **run_header(PROG, argv, args),
        "docs": len(examples),
        "tokens": sum(len(eg.reference) for eg in examples),
        "float32": {"ner_f1": float32["ner_f1"], "tag_acc": float32["tag_acc"]},
        "alphas": rows,
        "best_alpha_by_vector_error": min(rows, key=lambda a: rows[a]["vector_relative_error"]),
        "int8_weight_levels": int8_kernel().weight_levels,
        "int8_kernel": int8_kernel().name,
        **provenance(),
    }
    save_entry(args.out, args.name, entry, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
