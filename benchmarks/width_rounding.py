"""Speed of bf16 prediction on a CPU with decoder-call widths rounded up (the default) or exact.

    python -m benchmarks.width_rounding [--texts 1500] [--passes 2] [--source package:...]

Under bf16 autocast on a CPU the pipeline pads each prediction call to a width that is a
multiple of CPU_BF16_WIDTH_MULTIPLE (spacy_cmllm/pipeline/model.py), because oneDNN keeps a
kernel per input shape and exact widths grew RSS by a third over 20,000 Docs
(benchmarks/doc_memory.py measures the memory). This measures what the padding costs: the same
raw EWT sentences through one pipeline in one process, exact and rounded widths alternating
(a warm-up pass of each first), one torch thread. It records words/s, the number of distinct
decoder-call shapes, and how many tokens get the same tag and entity label both ways (bf16
rounds differently on padded shapes, so an untrained head's near-ties may flip).

Results go to benchmarks/results/width_rounding.json and .png.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import torch

from spacy_cmllm.pipeline import model as model_module
from spacy_cmllm.pipeline.model import get_backbone, use_bf16_autocast
from spacy_cmllm.provenance import provenance

from . import ROOT, SOURCE
from .pipelines import build_pipeline, ewt_texts, run_conditions, transformer_of

PROG = "python -m benchmarks.width_rounding"
# The width multiple is a constant of the package, not a setting of a pipeline: the passes
# set it in turn, as the only way to run the same pipeline both ways.
ROUNDED = model_module.CPU_BF16_WIDTH_MULTIPLE
SETTINGS = {"exact widths": 1, f"widths rounded up to a multiple of {ROUNDED}": ROUNDED}


class SettingRuns(TypedDict):
    """The measured passes of one setting, as the results file holds them."""

    words_per_second: list[float]
    distinct_shapes: int


def one_pass(nlp, texts: list[str], multiple: int) -> dict[str, Any]:
    model_module.CPU_BF16_WIDTH_MULTIPLE = multiple
    started = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=64))
    seconds = time.perf_counter() - started
    words = sum(len(doc) for doc in docs)
    labels = [(t.tag_, t.ent_iob_, t.ent_type_) for doc in docs for t in doc]
    return {"seconds": seconds, "words": words, "labels": labels}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--passes", type=int, default=2, help="measured passes of each setting, alternating")
    parser.add_argument("--source", default=SOURCE, help="base decoder of configs/default.cfg")
    parser.add_argument("--shared-cpu", action="store_true", help="record that other work shared the CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if not use_bf16_autocast(None, torch.device("cpu")):
        sys.exit("This CPU does not run bf16 natively: the pipeline does not round widths here.")
    conditions = run_conditions(args.shared_cpu)
    nlp = build_pipeline(args.source)
    texts = ewt_texts(args.texts)
    shapes: dict[int, set] = {multiple: set() for multiple in SETTINGS.values()}
    current = {"multiple": 1}
    decoder = get_backbone(transformer_of(nlp).model).decoder
    decoder.register_forward_pre_hook(
        lambda m, a, k: shapes[current["multiple"]].add(tuple(k["input_ids"].shape)), with_kwargs=True
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
    for measured in [False] + [True] * args.passes:
        for name, multiple in SETTINGS.items():
            current["multiple"] = multiple
            row = one_pass(nlp, texts, multiple)
            if measured:
                runs[name].append(row)
            print(
                f"{'pass' if measured else 'warm-up'} {name}: {row['words'] / row['seconds']:.0f} words/s", flush=True
            )
    model_module.CPU_BF16_WIDTH_MULTIPLE = ROUNDED

    exact, rounded = (runs[name] for name in SETTINGS)
    same = sum(a == b for a, b in zip(exact[0]["labels"], rounded[0]["labels"]))
    summary: dict[str, SettingRuns] = {
        name: {
            "words_per_second": [round(r["words"] / r["seconds"], 1) for r in rows],
            "distinct_shapes": len(shapes[SETTINGS[name]]),
        }
        for name, rows in runs.items()
    }
    mean = {name: sum(s["words_per_second"]) / len(s["words_per_second"]) for name, s in summary.items()}
    record = provenance()
    record["machine"].update(conditions)
    result = {
        "benchmark": f"bf16 prediction speed with rounded vs exact decoder-call widths ({PROG})",
        "pipeline": f"configs/default.cfg over {args.source}, heads untrained, one torch thread, batch_size 64",
        "texts": args.texts,
        "words_per_pass": exact[0]["words"],
        **record,
        "runs": summary,
        "rounded_vs_exact_speed": round(mean[list(SETTINGS)[1]] / mean[list(SETTINGS)[0]], 3),
        "same_labels_fraction": round(same / max(1, len(exact[0]["labels"])), 5),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "width_rounding.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "width_rounding.png")
    print(f"rounded / exact words/s: {result['rounded_vs_exact_speed']}; same labels: {result['same_labels_fraction']}")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(result["runs"])
    for i, name in enumerate(names):
        speeds = result["runs"][name]["words_per_second"]
        ax.bar(i, sum(speeds) / len(speeds), color="#4477aa" if i else "#bbbbbb")
        ax.scatter([i] * len(speeds), speeds, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n({result['runs'][n]['distinct_shapes']} shapes)" for n in names], fontsize=8)
    ax.set_ylabel("words/s (one thread)")
    ax.set_title(
        f"bf16 prediction, {result['machine']['cpu']} CPU{' (shared)' if result['machine']['shared_cpu'] else ''}: "
        f"rounded/exact {result['rounded_vs_exact_speed']}x",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
