"""One Tune trial = one ``spacy train`` of a config with overrides; scoring a trained run.

A trial's parameters are ``{"run": {...}, "setup": {...}}``: ``run`` says what differs
between trials (model, unmask, seed, phase), ``setup`` what the study fixes (corpus,
budget, base model, where runs live). The trainable trains with spaCy's own loop; the
config's ``[training.logger]`` is ``spacy-cmllm.TuneLogger.v1``, which reports every
full-dev evaluation to Tune, where the scheduler may stop the trial (spaCy's evaluation
after the first update is skipped: no rung reads it). A trial that reaches
the end of its budget scores its pipeline (``training/model-last``; ``model-best`` for a
baseline trained to convergence) on the full test set, with its own resources, and writes
``trial.json`` beside it: the record holds the per-document counts, so the study needs no
trained pipeline after the trial and a study continued on another machine loses nothing.
The study reads test scores only of its finalists; the others are chosen on dev alone.
"""

import json
import os
import shutil
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..corpora.sentences import CHUNKS_KEY
from ..hardware import cpu_capability

ROOT = Path(__file__).resolve().parents[2]
# model name -> config file in configs/; the decoder's row says which base model it used.
CONFIGS = {"smollm2": "study.cfg", "spacy-cnn": "spacy-cnn.cfg"}
# What the study scores, in report order.
TASKS = ("ner", "chunks", "pos")
TRIAL_FILE = "trial.json"


def run_name(run: Dict[str, Any]) -> str:
    unmask = f"-{run['unmask']}" if run["model"] == "smollm2" else ""
    return f"{run['phase']}-{run['model']}{unmask}-s{run['seed']}"


def device_name(use_gpu: int) -> str:
    if use_gpu < 0:
        return "cpu"
    import torch

    return torch.cuda.get_device_name(0)


@lru_cache(maxsize=None)
def tasks_of(model: str) -> Tuple[str, ...]:
    """The tasks the pipeline of ``model``'s study config has a component for."""
    return config_tasks(ROOT / "configs" / CONFIGS[model])


def config_tasks(path: Path) -> Tuple[str, ...]:
    """The study's tasks a pipeline config has a component for, read from its [components]:
    a tagger is POS, spaCy's ner or a bio_tagger on doc.ents is NER, a bio_tagger on
    doc.spans["chunks"] is chunking. A task without a component gets no score at all, not
    an F1 of 0 (configs/spacy-cnn.cfg has no chunker)."""
    from spacy.util import load_config

    config = load_config(path, interpolate=False)
    found = set()
    for name in config["nlp"]["pipeline"]:
        component = config["components"].get(name, {})
        factory = component.get("factory")
        if factory == "tagger":
            found.add("pos")
        elif factory == "ner" or (factory == "bio_tagger" and component.get("spans_key") is None):
            found.add("ner")
        elif factory == "bio_tagger" and component.get("spans_key") == CHUNKS_KEY:
            found.add("chunks")
    return tuple(task for task in TASKS if task in found)


def budget_of(run: Dict[str, Any], setup: Dict[str, Any]) -> Dict[str, int]:
    """Steps, evaluation frequency and patience of a run: decoder runs get the study's
    fixed budget; the CNN baseline its own (longer) one, with patience, to converge."""
    if run["model"] == "smollm2":
        return {"max_steps": setup["max_steps"], "eval_frequency": setup["eval_frequency"], "patience": 0}
    return {"max_steps": setup["baseline_steps"], "eval_frequency": setup["eval_frequency"],
            "patience": setup["baseline_patience"]}


def overrides_for(run: Dict[str, Any], setup: Dict[str, Any]) -> Dict[str, Any]:
    budget = budget_of(run, setup)
    overrides: Dict[str, Any] = {
        "paths.train": str(Path(setup["corpus"]) / "train.spacy"),
        "paths.dev": str(Path(setup["corpus"]) / "dev.spacy"),
        "system.seed": int(run["seed"]),
        "training.max_steps": budget["max_steps"],
        "training.eval_frequency": budget["eval_frequency"],
        "training.patience": budget["patience"],
        "training.max_epochs": 0,
        "training.batcher.size.rate": setup["batch_words"],
        "training.logger.@loggers": "spacy-cmllm.TuneLogger.v1",
        "training.logger.progress_bar": False,
    }
    if run["model"] == "smollm2":
        overrides["components.transformer.model.name"] = setup["base_model"]
        overrides["components.transformer.model.unmask"] = run["unmask"]
        # The heads' linear warm-up: a tenth of the budget, like the adapters'.
        overrides["training.optimizer.learn_rate.warmup_steps"] = max(1, budget["max_steps"] // 10)
    overrides.update(setup.get("overrides", {}).get(run["model"], {}))
    return overrides


def train_trial(params: Dict[str, Any]) -> None:
    """The Tune trainable: train one run; evaluations reach Tune through the logger."""
    import spacy_cmllm  # noqa: F401  (registers the logger, architectures and scorers)
    from spacy.cli.train import train

    run, setup = params["run"], params["setup"]
    out = Path(setup["work"]) / run_name(run)
    # A trial that was interrupted is trained again from the start.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    use_gpu = _spacy_gpu()
    config = Path(setup.get("configs", ROOT / "configs")) / CONFIGS[run["model"]]
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = time.perf_counter()
    with first_evaluation_skipped():
        train(config, out / "training", use_gpu=use_gpu, overrides=overrides_for(run, setup))
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    train_seconds = round(time.perf_counter() - start, 1)
    model_dir = out / "training" / ("model-last" if run["model"] == "smollm2" else "model-best")
    record = {
        "run": run,
        "started": started,
        "finished": finished,
        "train_seconds": train_seconds,
        "cpu_capability": cpu_capability(),
        "device": device_name(0 if _assigned_gpus() else -1),
        "model_dir": str(model_dir),
        # A decoder run's dev scores are its last evaluation (model-last); a baseline keeps its
        # best checkpoint, so its dev set is scored again.
        "scores": score_run(str(model_dir), setup["corpus"], use_gpu=use_gpu,
                            splits=("test",) if run["model"] == "smollm2" else ("dev", "test")),
    }
    # Written last: its presence means trained and scored.
    (out / TRIAL_FILE).write_text(json.dumps(record, separators=(",", ":")))


@contextmanager
def first_evaluation_skipped() -> Iterator[None]:
    """Within the block, spaCy's training loop skips its first evaluation.

    spaCy evaluates after the first update as well as every ``eval_frequency`` steps. On
    the full CoNLL-2003 dev set that first evaluation costs minutes of every trial for a
    score no rung reads. Its call returns no scores (score 0.0), which the Tune logger
    counts as round 0 without reporting it; later evaluations run as usual.
    """
    from spacy.training import loop

    create = loop.create_evaluation_callback

    def create_skipping_first(nlp, dev_corpus, weights):
        evaluate = create(nlp, dev_corpus, weights)
        calls = 0

        def skipping_first():
            nonlocal calls
            calls += 1
            return (0.0, {}) if calls == 1 else evaluate()

        return skipping_first

    loop.create_evaluation_callback = create_skipping_first
    try:
        yield
    finally:
        loop.create_evaluation_callback = create


def _spacy_gpu() -> int:
    """spaCy's use_gpu for a trial: 0 where Ray gave it a GPU and cupy is installed (the
    heads on the GPU too); else -1. The decoder goes to CUDA by itself (device=null)."""
    if not _assigned_gpus():
        return -1
    try:
        import cupy  # noqa: F401
    except ImportError:
        return -1
    return 0


def _assigned_gpus() -> List[int]:
    try:
        import ray

        # get_gpu_ids() would start a Ray of its own outside a trial.
        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # not inside Ray
        return []


def read_trial(setup: Dict[str, Any], run: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    path = Path(setup["work"]) / run_name(run) / TRIAL_FILE
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- scoring a finished run


def doc_counts(nlp, docs) -> Dict[str, List[List[int]]]:
    """Per document: NER and chunk (tp, predicted, gold) spans (seqeval strict IOB2) and
    POS (correct, tokens). Predicted on the gold tokens, as CoNLL scores are."""
    from spacy.tokens import Doc

    from ..pipeline.scorer import iob2_tags
    from .bootstrap import span_counts

    counts: Dict[str, List[List[int]]] = {"ner": [], "chunks": [], "pos": []}
    inputs = (Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]) for doc in docs)
    for gold, predicted in zip(docs, nlp.pipe(inputs)):
        n = len(gold)
        if gold.has_annotation("ENT_IOB"):
            counts["ner"].append(list(span_counts(iob2_tags(n, gold.ents), iob2_tags(n, predicted.ents))))
        if CHUNKS_KEY in gold.spans:
            counts["chunks"].append(list(span_counts(
                iob2_tags(n, gold.spans[CHUNKS_KEY]), iob2_tags(n, predicted.spans.get(CHUNKS_KEY, [])))))
        if gold.has_annotation("TAG"):
            counts["pos"].append([sum(p.tag_ == g.tag_ for p, g in zip(predicted, gold)), n])
    return {task: rows for task, rows in counts.items() if rows}


def score_run(model_dir: str, corpus: str, splits=("dev", "test"), use_gpu: int = -1) -> Dict[str, Any]:
    """Per-document counts of a trained pipeline on the full sets of ``splits``."""
    import spacy
    from spacy.tokens import DocBin

    import spacy_cmllm  # noqa: F401

    if use_gpu >= 0:
        spacy.require_gpu(use_gpu)
    nlp = spacy.load(model_dir)
    start = time.perf_counter()
    result: Dict[str, Any] = {}
    for split in splits:
        docs = list(DocBin().from_disk(Path(corpus) / f"{split}.spacy").get_docs(nlp.vocab))
        result[split] = doc_counts(nlp, docs)
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    return result
