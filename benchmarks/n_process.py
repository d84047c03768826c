"""Words/s of nlp.pipe with n_process 1 and 2, under fork and spawn, on the same texts.

    python -m benchmarks.n_process [--texts 400] [--source package:...] [--model PATH]

Every run processes the same raw EWT sentences with the same batch size, and its Docs are
compared with the first run's (tags and entities must be identical). Rows:

* n_process=1 on one torch thread, and on torch's default threads (one per core);
* n_process=2 under fork and under spawn: each worker computes on one torch thread
  (spacy_cmllm/decoder/threads.py); spawn's time includes starting the workers (a fresh
  interpreter each, which imports torch and unpickles the pipeline).

Results go to benchmarks/results/n_process.json and n_process.png. The machine, its load
average at the start and whether it was shared are recorded: on a shared CPU, runs on
several threads are slowed far more than runs on one.
"""

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, TypedDict

import torch

from spacy_cmllm.provenance import provenance

from . import ROOT, SOURCE
from .pipelines import build_pipeline, ewt_texts, run_conditions


class Run(TypedDict):
    """How one row runs nlp.pipe: None leaves torch's threads, or the start method, as they are."""

    key: str
    name: str
    n_process: int
    threads: int | None
    method: str | None


RUNS: list[Run] = [
    {"key": "one-thread", "name": "1 process, 1 thread", "n_process": 1, "threads": 1, "method": None},
    {"key": "default-threads", "name": "1 process, default threads", "n_process": 1, "threads": None, "method": None},
    {"key": "fork", "name": "2 processes, fork", "n_process": 2, "threads": None, "method": "fork"},
    {"key": "spawn", "name": "2 processes, spawn", "n_process": 2, "threads": None, "method": "spawn"},
]


def annotations(docs) -> list[Any]:
    return [([t.tag_ for t in doc], [(e.start, e.end, e.label_) for e in doc.ents]) for doc in docs]


def time_run(nlp, texts: list[str], run: Run, *, batch_size: int) -> dict[str, Any]:
    """One timed nlp.pipe over ``texts`` as ``run`` says; the parent's threads restored."""
    default_threads = torch.get_num_threads()
    if run["threads"] is not None:
        torch.set_num_threads(run["threads"])
    if run["method"] is not None:
        multiprocessing.set_start_method(run["method"], force=True)
    try:
        started = time.perf_counter()
        docs = list(nlp.pipe(texts, batch_size=batch_size, n_process=run["n_process"]))
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(default_threads)
    words = sum(len(doc) for doc in docs)
    return {
        **run,
        "torch_threads_in_parent": run["threads"] or default_threads,
        "seconds": round(seconds, 2),
        "words": words,
        "words_per_s": round(words / seconds, 1),
        "annotations": annotations(docs),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.n_process", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=400, help="EWT sentences to process")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--source", default=SOURCE, help="base decoder of configs/default.cfg (untrained heads)")
    parser.add_argument("--model", default=None, help="a trained pipeline to time instead")
    parser.add_argument(
        "--runs",
        default=",".join(r["key"] for r in RUNS),
        help="comma-separated runs, of: " + ", ".join(r["key"] for r in RUNS),
    )
    parser.add_argument("--shared-cpu", action="store_true", help="record that other work shared the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    conditions = run_conditions(args.shared_cpu)
    texts = ewt_texts(args.texts)
    nlp = build_pipeline(args.source, model=args.model)
    wanted = [name.strip() for name in args.runs.split(",")]
    results = []
    for run in [r for r in RUNS if r["key"] in wanted]:
        row = time_run(nlp, texts, run, batch_size=args.batch_size)
        print(f"{row['name']}: {row['words_per_s']:,.0f} words/s ({row['seconds']} s)", flush=True)
        results.append(row)
    reference = results[0]["annotations"]
    for row in results:
        row["same_as_first"] = row.pop("annotations") == reference
    record = provenance()
    record["machine"].update(conditions)
    result = {
        "benchmark": "nlp.pipe words/s with n_process 1 and 2 (python -m benchmarks.n_process)",
        "pipeline": args.model or f"configs/default.cfg over {args.source}, heads untrained",
        "texts": len(texts),
        "batch_size": args.batch_size,
        **record,
        "runs": results,
        "all_same": all(row["same_as_first"] for row in results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "n_process.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "n_process.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(runs) + 1.4))
    names = [r["name"] for r in runs]
    values = [r["words_per_s"] for r in runs]
    ax.barh(names, values, color=["#999999" if r["n_process"] == 1 else "#3b75af" for r in runs])
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(right=max(values) * 1.25)
    machine = result["machine"]
    shared = ", shared" if machine["shared_cpu"] else ""
    ax.set_xlabel(
        f"nlp.pipe words/s ({result['texts']} EWT sentences; {machine['cpu_count']} cores{shared}, "
        f"load {machine['load_average_at_start'][0]} at start)",
        fontsize=8,
    )
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
