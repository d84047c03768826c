"""Documents/s of `annotate` locally vs on a local Ray instance, in one run on the same input,
and locally with packed windows (the shipped default) vs one window per row (`pack = false`).

The pipeline is the default config's (SmolLM2-135M backbone + tagger + ner), initialized on a
few bundled EWT sentences and saved: its speed does not depend on how well it was trained.
The input is the bundled EWT test split, one sentence per JSONL row. Each mode is timed end
to end as a user runs it (pipeline loading and, for Ray, starting the instance included), and
the two outputs are compared file by file.

    python -m benchmarks.annotate [--docs 630] [--actors 2] [--shard-size 50]

Writes benchmarks/results/annotate.json and annotate.png (`--replot` redraws the PNG from the JSON).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import spacy
from spacy.training import Example

from spacy_cmllm.annotate import AnnotateJob, run_local, run_ray
from spacy_cmllm.corpora import read_conllu
from spacy_cmllm.pipeline.bio_tagger import BIOTagger
from spacy_cmllm.pipeline.model import use_bf16_autocast
from spacy_cmllm.provenance import PACKAGES, provenance

from . import ROOT
from .pipelines import component_of

PROG = "python -m benchmarks.annotate"
EWT_TEST = ROOT / "assets" / "ewt" / "test.conllu"
RESULTS = ROOT / "benchmarks" / "results" / "annotate.json"
PLOT = RESULTS.with_suffix(".png")


def ewt_sentences(path: Path):
    """(text, words, tags) per sentence of a CoNLL-U file."""
    for sentence in read_conllu(path):
        yield sentence.text, sentence.words, sentence.tags


def build_pipeline(directory: Path) -> None:
    config = spacy.util.load_config(ROOT / "configs" / "default.cfg", interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    sentences = list(ewt_sentences(EWT_TEST))[:8]
    examples = [
        Example.from_dict(nlp.make_doc(" ".join(w)), {"words": w, "tags": t, "entities": ["O"] * len(w)})
        for _, w, t in sentences
    ]
    component_of(nlp, "ner", BIOTagger).add_label("PER")
    nlp.initialize(lambda: examples)
    nlp.to_disk(directory)


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("local_unpacked", "local", "ray") if m in report]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(modes, [report[m]["docs_per_s"] for m in modes], color=["#cccccc", "#999999", "#3b75af"][-len(modes) :])
    for i, m in enumerate(modes):
        ax.text(
            i,
            report[m]["docs_per_s"],
            f"{report[m]['docs_per_s']:.2f}\n{report[m]['setup']}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_ylabel("documents/s (end to end)")
    ax.set_ylim(0, max(report[m]["docs_per_s"] for m in modes) * 1.35)
    ax.set_title(f"annotate, {report['input']}; outputs identical: {report['outputs_identical']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=630)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON")
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(RESULTS.read_text()))
        return 0
    import ray  # noqa: F401 -- stop before any work when Ray is missing
    import torch

    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    try:
        build_pipeline(work / "pipeline")
        # The same weights with one window per row: the packing's share of the speed.
        shutil.copytree(work / "pipeline", work / "pipeline-unpacked")
        config = work / "pipeline-unpacked" / "config.cfg"
        text = config.read_text()
        assert "pack = true" in text
        config.write_text(text.replace("pack = true", "pack = false"))
        texts = [text for text, _, _ in ewt_sentences(EWT_TEST)][: args.docs]
        with (work / "in.jsonl").open("w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
        results = {}
        for mode in ("local_unpacked", "local", "ray"):
            pipeline = work / ("pipeline-unpacked" if mode == "local_unpacked" else "pipeline")
            job = AnnotateJob(
                str(work / "in.jsonl"), str(work / mode), str(pipeline), shard_size=args.shard_size, batch_size=32
            )
            start = time.perf_counter()
            if mode.startswith("local"):
                summary = run_local(job)
            else:
                summary = run_ray(job, num_actors=args.actors, cpus_per_actor=max(1, os.cpu_count() // args.actors))
            seconds = time.perf_counter() - start
            results[mode] = {
                "seconds": round(seconds, 1),
                "docs_per_s": round(summary["written"] / seconds, 2),
                **summary,
            }
            print(f"{mode}: {summary['written']} docs in {seconds:.1f} s = {summary['written'] / seconds:.2f} docs/s")

        def files(d):
            return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

        identical = files(work / "local") == files(work / "ray")
        # Whether packing changed any label (bf16 rounds a little differently per batch shape).
        same_labels = files(work / "local") == files(work / "local_unpacked")
        report = {
            "command": f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:]),
            "input": f"bundled EWT test, {len(texts)} sentences as documents",
            "pipeline": "configs/default.cfg (SmolLM2-135M, unmask 0011, LoRA, packed windows) + tagger + ner, CPU, "
            + ("bf16 autocast (native bf16)" if use_bf16_autocast(None, torch.device("cpu")) else "float32"),
            "local_unpacked": {
                **results["local_unpacked"],
                "setup": f"one process, pack = false, torch threads {torch.get_num_threads()}",
            },
            "local": {**results["local"], "setup": f"one process, torch threads {torch.get_num_threads()}"},
            "ray": {
                **results["ray"],
                "setup": f"local Ray instance, {args.actors} actors x {max(1, os.cpu_count() // args.actors)} CPU",
            },
            "ray_vs_local_docs_per_s": round(results["ray"]["docs_per_s"] / results["local"]["docs_per_s"], 2),
            "packed_vs_unpacked_docs_per_s": round(
                results["local"]["docs_per_s"] / results["local_unpacked"]["docs_per_s"], 2
            ),
            "outputs_identical": identical,
            "packed_outputs_identical_to_unpacked": same_labels,
            **provenance(packages=(*PACKAGES, "ray")),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        plot(report)
        print(json.dumps(report, indent=2))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
