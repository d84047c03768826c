"""Wall time and scores of `spacy project run all`, step by step, as a user runs it.

Every step of the `all` workflow runs with `--force` in its own `spacy project run` process,
and is timed end to end; the test scores are read from the evaluate step's metrics file.
`--isa avx2` runs every step as on a CPU without AVX512 or native bf16: PyTorch's kernels,
oneDNN and MKL are limited to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS) and bf16 autocast is off (`--vars.mixed_precision false`), which
is what the shipped config does by itself on such a CPU.

    python -m benchmarks.workflow_time [--isa avx2] [--out benchmarks/results/workflow_time_<isa>.json]

Writes the JSON and a PNG of the step times beside it.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import srsly

from spacy_cmllm.provenance import provenance

from . import ROOT

PROG = "python -m benchmarks.workflow_time"
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# The target for the whole workflow on a 2-core CPU, in minutes.
BUDGET_MINUTES = 20


def capability(env) -> str:
    """The capability PyTorch dispatches to under `env`, as a child process sees it."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    fig, ax = plt.subplots(figsize=(7, 3))
    left = 0.0
    for name, seconds in steps.items():
        ax.barh([0], [seconds / 60], left=left, label=f"{name} ({seconds / 60:.1f} min)")
        left += seconds / 60
    ax.axvline(BUDGET_MINUTES, color="#c44e52", lw=2)
    ax.set_yticks([])
    ax.set_xlabel(f"minutes (red: {BUDGET_MINUTES}-minute budget)")
    test = report["test"]
    ax.set_title(
        f"spacy project run all, {report['machine']['dispatch']}: test ents_f {test['ents_f']}, tag_acc {test['tag_acc']}, pos_acc {test.get('pos_acc')}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--isa", choices=["native", "avx2"], default="native")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "benchmarks" / "results" / f"workflow_time_{args.isa}.json"
    env = dict(os.environ)
    extra = []
    if args.isa == "avx2":
        env.update(AVX2_ENV)
        extra = ["--vars.mixed_precision", "false"]
    project = srsly.read_yaml(ROOT / "project.yml")
    steps = {}
    for step in project["workflows"]["all"]:
        command = [sys.executable, "-m", "spacy", "project", "run", step, str(ROOT), "--force", *extra]
        print(f"== {step}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        steps[step] = round(time.perf_counter() - start, 1)
        print(f"== {step}: {steps[step]} s", flush=True)
    metrics = srsly.read_json(ROOT / "metrics" / "ewt.json")

    def pct(key):
        value = metrics.get(key)
        return None if value is None else round(100 * value, 2)

    total = sum(steps.values())
    record = provenance()
    # What the children dispatched to, which --isa avx2 holds below the hardware's.
    record["machine"].update(
        dispatch=capability(env) + (" (limited by environment), float32" if args.isa == "avx2" else ""),
        env={k: env[k] for k in AVX2_ENV if k in env},
    )
    report = {
        "command": f"{PROG} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "steps": steps,
        "total_minutes": round(total / 60, 1),
        "within_budget": total / 60 <= BUDGET_MINUTES,
        "test": {
            "ents_f": pct("ents_f"),
            "ents_seqeval_f": pct("ents_seqeval_f"),
            "tag_acc": pct("tag_acc"),
            "pos_acc": pct("pos_acc"),
        },
        **record,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
