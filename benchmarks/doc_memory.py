"""Memory of a long nlp.pipe stream: RSS every 1,000 Docs over 20,000 Docs.

    python -m benchmarks.doc_memory [--docs 20000] [--source DIR | --tiny] [--model PATH]

Three streams over the same raw EWT sentences (the bundled ~16,600 read again from the
start where more are asked for), each in a process of its own (memory a stream frees stays
with the process and would hide the next one's growth), over configs/default.cfg:

* lean, discarded: Docs as the shipped configs leave them (doc_cleaner drops the decoder's
  states), not kept by the consumer;
* lean, kept: the same Docs, each added to a DocBin with user data, as a corpus is annotated;
* states kept: doc_cleaner disabled, each Doc added to a DocBin with user data.

The target (issue 33): RSS flat after warm-up in the lean streams, at most 5 % growth from
5,000 to 20,000 Docs. Results go to benchmarks/results/NAME.json and NAME.png (--name, default doc_memory).
With --tiny the decoder is a random 4-layer Llama of width 64 with SmolLM2's tokenizer (the
Docs, not the decoder, are what is measured; SmolLM2's states are 9 times wider).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

import torch
from spacy.tokens import DocBin

from spacy_cmllm.pipeline.model import use_bf16_autocast
from spacy_cmllm.provenance import provenance

from . import ROOT, SOURCE
from .pipelines import build_pipeline, ewt_texts, rss_mb, run_conditions, save_tiny_base

PROG = "python -m benchmarks.doc_memory"


class Stream(TypedDict):
    """What a stream does with its Docs: keep them in a DocBin, and which components it disables."""

    keep: bool
    disable: list[str]


STREAMS: dict[str, Stream] = {
    "lean, discarded": {"keep": False, "disable": []},
    "lean, kept in a DocBin": {"keep": True, "disable": []},
    "states kept (no doc_cleaner), kept in a DocBin": {"keep": True, "disable": ["doc_cleaner"]},
}
MAX_GROWTH = 0.05
PRECISION = {"null": None, "true": True, "false": False}
ROW_PREFIX = "stream-row: "


def stream(nlp, texts: list[str], *, keep: bool, disable: list[str], every: int, batch_size: int) -> dict[str, Any]:
    """RSS (MiB) after every ``every`` Docs of one nlp.pipe stream."""
    docbin = DocBin(store_user_data=True) if keep else None
    points = [{"docs": 0, "rss_mb": round(rss_mb(), 1)}]
    started = time.perf_counter()
    for i, doc in enumerate(nlp.pipe(texts, batch_size=batch_size, disable=disable), 1):
        if docbin is not None:
            docbin.add(doc)
        if i % every == 0:
            points.append({"docs": i, "rss_mb": round(rss_mb(), 1)})
    seconds = time.perf_counter() - started
    return {
        "points": points,
        "seconds": round(seconds, 1),
        "docbin_bytes": len(docbin.to_bytes()) if docbin is not None else None,
    }


def growth(points: list[dict[str, Any]], start: int, end: int) -> float | None:
    """Relative RSS growth between the points at ``start`` and ``end`` Docs."""
    by_docs = {p["docs"]: p["rss_mb"] for p in points}
    if start not in by_docs or end not in by_docs:
        return None
    return round(by_docs[end] / by_docs[start] - 1, 4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=5000, help="Docs after which RSS must be flat")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--source", default=SOURCE, help="base decoder of configs/default.cfg")
    parser.add_argument("--tiny", action="store_true", help="a random small Llama with --source's tokenizer")
    parser.add_argument("--model", default=None, help="a trained pipeline instead")
    parser.add_argument(
        "--mixed-precision",
        choices=["null", "true", "false"],
        default="null",
        help="the transformer's mixed_precision (null: bf16 where the CPU has native bf16)",
    )
    parser.add_argument("--shared-cpu", action="store_true", help="record that other work shared the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="doc_memory", help="result file names: NAME.json, NAME.png")
    parser.add_argument("--stream", choices=list(STREAMS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.stream is not None:
        # One stream, in this process; the row goes to stdout for the parent.
        torch.set_num_threads(args.threads)
        how = STREAMS[args.stream]
        nlp = build_pipeline(args.source, model=args.model, mixed_precision=PRECISION[args.mixed_precision])
        row = stream(
            nlp,
            ewt_texts(args.docs),
            keep=how["keep"],
            disable=how["disable"],
            every=args.every,
            batch_size=args.batch_size,
        )
        print(ROW_PREFIX + json.dumps(row), flush=True)
        return row

    conditions = run_conditions(args.shared_cpu)
    with tempfile.TemporaryDirectory() as tmp:
        source = str(save_tiny_base(Path(tmp) / "tiny")) if args.tiny else args.source
        results = {}
        for name in STREAMS:
            # A process of its own, started as this one was (python -m, from the repository root).
            command = [
                sys.executable,
                "-m",
                "benchmarks.doc_memory",
                "--stream",
                name,
                "--source",
                source,
                "--docs",
                str(args.docs),
                "--every",
                str(args.every),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
                "--mixed-precision",
                args.mixed_precision,
            ]
            if args.model:
                command += ["--model", args.model]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(
                next(line[len(ROW_PREFIX) :] for line in done.stdout.splitlines() if line.startswith(ROW_PREFIX))
            )
            row["growth_after_warm_up"] = growth(row["points"], args.warm_up, args.docs)
            results[name] = row
            print(
                f"{name}: RSS {row['points'][0]['rss_mb']:.0f} -> {row['points'][-1]['rss_mb']:.0f} MiB, "
                f"growth {args.warm_up}->{args.docs} Docs {row['growth_after_warm_up']}, {row['seconds']} s",
                flush=True,
            )
    lean = [results[name]["growth_after_warm_up"] for name in STREAMS if not STREAMS[name]["disable"]]
    record = provenance()
    record["machine"].update(conditions)
    result = {
        "benchmark": f"RSS over a long nlp.pipe stream ({PROG})",
        "pipeline": args.model
        or (
            f"configs/default.cfg over a random 4-layer, width-64 Llama with the tokenizer of {args.source}"
            if args.tiny
            else f"configs/default.cfg over {source}"
        )
        + ", heads untrained",
        "docs": args.docs,
        "warm_up_docs": args.warm_up,
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "mixed_precision": PRECISION[args.mixed_precision],
        "bf16_autocast": use_bf16_autocast(PRECISION[args.mixed_precision], torch.device("cpu")),
        **record,
        "streams": results,
        "max_growth": MAX_GROWTH,
        "meets_target": all(g is not None and g <= MAX_GROWTH for g in lean),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / f"{args.name}.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, row in result["streams"].items():
        docs = [p["docs"] for p in row["points"]]
        rss = [p["rss_mb"] for p in row["points"]]
        label = name if row["growth_after_warm_up"] is None else f"{name} ({100 * row['growth_after_warm_up']:+.1f} %)"
        ax.plot(docs, rss, marker="o", markersize=3, label=label)
    ax.axvline(result["warm_up_docs"], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(
        f"Docs through nlp.pipe (growth in brackets: {result['warm_up_docs']:,} to {result['docs']:,} Docs)", fontsize=8
    )
    ax.set_ylabel("RSS (MiB)")
    caches = ", ".join(f"{k}={v}" for k, v in result["machine"].get("shape_cache_env", {}).items())
    precision = "bf16 autocast" if result.get("bf16_autocast") else "float32"
    ax.set_title(
        f"{precision}{', ' + caches if caches else ''}; {result['machine']['cpu']} CPU, "
        f"{result['machine']['cpu_count']} cores{' (shared)' if result['machine']['shared_cpu'] else ''}",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
