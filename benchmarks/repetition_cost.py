"""What sequence repetition costs and early exit saves, measured in one run.

For each setting (repeat r, exit layer) one pipeline of the same architecture
(CausalMaskLLM.v4, the shipped recipe's settings otherwise) is built around ONE loaded
decoder, shared (pipelines.pipeline_variant), so that every setting runs the same weights and
the run holds one model in memory; its transformer component is timed on the same gold-token
Docs:

* prediction: words/s of the transformer's predict over all Docs (packed, as shipped);
* training: words/s of the decoder's forward + backward (``begin_update`` and its backprop
  with unit gradients) on batches of about ``--batch-words`` words, as ``nlp.update`` runs it.

Settings are timed round-robin, ``--rounds`` times each, and the median is kept, so that a
slow spell of a shared machine does not land on one setting. Ratios are against r = 1 at
full depth from the same run. The heads cost the same for every setting and are left out.

    python -m benchmarks.repetition_cost corpus/conll03/test.spacy --docs 40 --repeats 1,2,4 --exits 0,20

writes benchmarks/results/repetition_cost.json and .png (``--out``).
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy
import spacy
from spacy.tokens import Doc, DocBin

from spacy_cmllm.provenance import provenance

from . import ROOT, SOURCE
from .pipelines import gold_token_docs, pipeline_variant, transformer_of

PROG = "python -m benchmarks.repetition_cost"
RESULTS = ROOT / "benchmarks" / "results" / "repetition_cost.json"


def gold_docs(path: Path, n_docs: int) -> list[Doc]:
    """Fresh Docs of the gold tokens of the first ``n_docs`` documents (0 = all)."""
    vocab = spacy.blank("en").vocab
    docs = list(DocBin().from_disk(path).get_docs(vocab))
    return gold_token_docs(vocab, docs[:n_docs] if n_docs else docs)


def hidden_layers(exit_layer: int) -> list[int]:
    """The states the listeners read: the exit layer's, or the last one's (0: full depth)."""
    return [exit_layer] if exit_layer else [-1]


def transformer_pipeline(
    base: str, *, repeat: int, exit_layer: int, unmask: str, window: int, stride: int, mixed_precision=None
):
    """A blank pipeline with only the transformer, initialized (its decoder loaded)."""
    nlp = spacy.blank("en")
    model = {
        "@architectures": "spacy-cmllm.CausalMaskLLM.v4",
        "name": base,
        "unmask": unmask,
        "repeat": repeat,
        "window": window,
        "stride": stride,
        "hidden_layers": hidden_layers(exit_layer),
        "mixed_precision": mixed_precision,
    }
    nlp.add_pipe("transformer", config={"model": model})
    nlp.initialize()
    return nlp


def batches(docs: Sequence[Doc], words: int) -> list[list[Doc]]:
    out: list[list[Doc]] = [[]]
    count = 0
    for doc in docs:
        if out[-1] and count + len(doc) > words:
            out.append([])
            count = 0
        out[-1].append(doc)
        count += len(doc)
    return [b for b in out if b]


def time_predict(nlp, docs: Sequence[Doc]) -> float:
    trf = transformer_of(nlp)
    start = time.perf_counter()
    for batch in batches(docs, 2000):
        trf.predict(batch)
    return time.perf_counter() - start


def time_train(nlp, docs: Sequence[Doc], batch_words: int) -> float:
    model = transformer_of(nlp).model
    start = time.perf_counter()
    for batch in batches(docs, batch_words):
        output, backprop = model.begin_update(batch)
        # By key: ModelOutput's fields are attributes only at run time, which its type does not declare.
        d = [[numpy.ones_like(data.model_output["last_hidden_state"])] for data in output.doc_data if data.model_output]
        backprop(output.unsplit_by_doc(d))
    return time.perf_counter() - start


def measure(
    settings: list[dict[str, int]],
    docs: Sequence[Doc],
    *,
    base: str,
    unmask: str,
    window: int,
    stride: int,
    rounds: int,
    batch_words: int,
    train_docs: int,
    mixed_precision=None,
) -> list[dict[str, object]]:
    first = transformer_pipeline(
        base, unmask=unmask, window=window, stride=stride, mixed_precision=mixed_precision, **settings[0]
    )
    pipelines = [first] + [
        pipeline_variant(first, repeat=s["repeat"], hidden_layers=hidden_layers(s["exit_layer"])) for s in settings[1:]
    ]
    n_words = sum(len(d) for d in docs)
    train_set = list(docs[:train_docs]) if train_docs else list(docs)
    n_train = sum(len(d) for d in train_set)
    for nlp in pipelines:  # warm-up: first-call allocations and kernels built per shape
        time_predict(nlp, docs)
        time_train(nlp, train_set, batch_words)
    predict: list[list[float]] = [[] for _ in settings]
    train: list[list[float]] = [[] for _ in settings]
    for round_ in range(rounds):
        for i, nlp in enumerate(pipelines):
            predict[i].append(time_predict(nlp, docs))
            train[i].append(time_train(nlp, train_set, batch_words))
            print(
                f"round {round_ + 1}/{rounds} {settings[i]}: predict {predict[i][-1]:.1f} s, train {train[i][-1]:.1f} s",
                flush=True,
            )
    predict_speed = [round(n_words / statistics.median(p), 1) for p in predict]
    train_speed = [round(n_train / statistics.median(t), 1) for t in train]
    return [
        {
            **s,
            "predict_words_per_s": predict_speed[i],
            "train_words_per_s": train_speed[i],
            "predict_seconds": [round(x, 2) for x in predict[i]],
            "train_seconds": [round(x, 2) for x in train[i]],
            "predict_cost_vs_r1": round(predict_speed[0] / predict_speed[i], 3),
            "train_cost_vs_r1": round(train_speed[0] / train_speed[i], 3),
        }
        for i, s in enumerate(settings)
    ]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"r={r['repeat']}" + (f"\nexit {r['exit_layer']}" if r["exit_layer"] else "") for r in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 2, 3))
    xs = numpy.arange(len(rows))
    for k, (key, name, color) in enumerate(
        (("predict_cost_vs_r1", "prediction", "#3b75af"), ("train_cost_vs_r1", "training", "#c9a227"))
    ):
        values = [r[key] for r in rows]
        ax.bar(xs + (k - 0.5) * 0.38, values, 0.38, label=name, color=color)
        for x, v in zip(xs + (k - 0.5) * 0.38, values):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="#666666", linewidth=0.8)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("time per word vs r=1, full depth")
    ax.set_title(
        f"{result['words']} words, {result['machine']['cpu']} CPU, {result['machine']['threads']} threads, {result.get('precision', 'default')} precision",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="a .spacy file of documents (gold tokens are used)")
    parser.add_argument("--base", default=SOURCE, help="the base decoder (hub name, directory, .gguf, package:...)")
    parser.add_argument("--docs", type=int, default=40, help="documents timed in prediction (0 = all)")
    parser.add_argument("--train-docs", type=int, default=10, help="documents timed in training (0 = as --docs)")
    parser.add_argument("--repeats", default="1,2,4")
    parser.add_argument("--exits", default="0,20", help="exit layers; 0 = full depth")
    parser.add_argument("--unmask", default="0011")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--stride", type=int, default=192)
    parser.add_argument("--batch-words", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--precision",
        choices=["default", "fp32", "bf16"],
        default="default",
        help="default: bf16 autocast where the CPU computes bf16 natively, as the pipeline does",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    repeats = [int(x) for x in args.repeats.split(",")]
    exits = [int(x) for x in args.exits.split(",")]
    settings = [{"repeat": 1, "exit_layer": 0}]
    settings += [{"repeat": r, "exit_layer": e} for e in exits for r in repeats if (r, e) != (1, 0)]
    docs = gold_docs(args.data, args.docs)
    rows = measure(
        settings,
        docs,
        base=args.base,
        unmask=args.unmask,
        window=args.window,
        stride=args.stride,
        rounds=args.rounds,
        batch_words=args.batch_words,
        train_docs=args.train_docs,
        mixed_precision={"default": None, "fp32": False, "bf16": True}[args.precision],
    )
    words = argv if argv is not None else sys.argv[1:]
    result = {
        "command": f"{PROG} " + " ".join(words),
        **provenance(),
        "precision": args.precision,
        "words": sum(len(d) for d in docs),
        "train_words": sum(len(d) for d in (docs[: args.train_docs] if args.train_docs else docs)),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    for row in rows:
        print(
            f"repeat {row['repeat']} exit {row['exit_layer'] or 'none':>4}: predict {row['predict_words_per_s']:8.1f} words/s "
            f"(x{row['predict_cost_vs_r1']:.2f} time), train {row['train_words_per_s']:8.1f} words/s (x{row['train_cost_vs_r1']:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
