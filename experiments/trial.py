"""One run, start to end: `spacy train` of its config under its budget, then the trained
pipeline scored on the dev and test sets, written as ``trial.json`` beside it.

    python -m experiments.trial JOB    (JOB: train_and_score's arguments as a JSON object)

The record holds what a CSV row and the study's bootstrap need (the per-document counts
included), so that no trained pipeline is needed after the run, and a study continued on
another machine loses nothing. It is written last: its presence means trained and scored.
"""

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from spacy_cmllm.hardware import cpu_capability

from .runs import CONFIGS_DIR, Budget, overrides_for
from .scoring import score_pipeline, subset
from .training import train

TRIAL_FILE = "trial.json"


def train_and_score(
    run: dict[str, Any],
    budget: Budget,
    *,
    config: str,
    corpus: Path,
    out: Path,
    base_model: str,
    logger: dict[str, Any],
    configs: Path = CONFIGS_DIR,
    use_gpu: int = -1,
    text_scores: bool = False,
    skip_first_evaluation: bool = False,
) -> dict[str, Any]:
    """Train ``run`` from scratch in ``out`` and score it; return the record it wrote.

    run (Dict[str, Any]): the run (see runs.py).
    budget (Budget): its budget.
    config (str): the config file it trains, in ``configs``.
    corpus (Path): a directory with train.spacy, dev.spacy and test.spacy.
    out (Path): the run's folder (emptied first: an interrupted run trains again).
    base_model (str): the decoder's base model (decoder runs).
    logger (Dict[str, Any]): overrides of [training.logger], the harness's choice.
    use_gpu (int): spaCy's GPU id, -1 for none.
    text_scores (bool): also score from raw text, as `spacy evaluate` does.
    skip_first_evaluation (bool): no evaluation after the first update (the study's).
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    corpus = Path(corpus)
    dev = subset(corpus / "dev.spacy", out / "train-dev.spacy", budget.train_dev_docs)
    overrides = {**overrides_for(run, budget, train=corpus / "train.spacy", dev=dev, base_model=base_model), **logger}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    start = time.perf_counter()
    progress = train(
        Path(configs) / config,
        out / "training",
        overrides,
        use_gpu=use_gpu,
        skip_first_evaluation=skip_first_evaluation,
    )
    train_seconds = round(time.perf_counter() - start, 1)
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    model_dir = out / "training" / budget.checkpoint
    sets = {
        "dev": subset(corpus / "dev.spacy", out / "dev.spacy", budget.dev_docs),
        "test": subset(corpus / "test.spacy", out / "test.spacy", budget.test_docs),
    }
    record = {
        "run": run,
        "config": config,
        "budget": {
            "max_steps": budget.max_steps,
            "batch_words": budget.batch_words,
            "dev_docs": budget.dev_docs,
            "test_docs": budget.test_docs,
        },
        "started": started,
        "finished": finished,
        "train_seconds": train_seconds,
        "words": progress.get("words"),
        "train_words": corpus_words(corpus / "train.spacy"),
        "cpu_capability": cpu_capability(),
        "device": device_name(),
        "model_dir": str(model_dir),
        "scores": score_pipeline(model_dir, sets, text=text_scores, use_gpu=use_gpu),
    }
    (out / TRIAL_FILE).write_text(json.dumps(record, separators=(",", ":")))
    return record


def read_record(out: Path) -> dict[str, Any] | None:
    """The record of the run in ``out``, None if it did not finish."""
    path = Path(out) / TRIAL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def corpus_words(path: Path) -> int:
    """The gold tokens of a DocBin: the words of one epoch."""
    import spacy
    from spacy.tokens import DocBin

    return sum(len(doc) for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def device_name() -> str:
    """Where the decoder computed: the GPU's name where this process sees one (the decoder
    goes to CUDA by itself), else "cpu"."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def job(run: dict[str, Any], budget: Budget, **kwargs: Any) -> str:
    """train_and_score's arguments as the JSON that ``python -m experiments.trial`` reads."""
    return json.dumps(
        {"run": run, "budget": asdict(budget), **{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}}
    )


def main(argv: list[str]) -> int:
    arguments = json.loads(argv[0])
    paths: dict[str, Any] = {k: Path(arguments.pop(k)) for k in ("corpus", "out", "configs") if k in arguments}
    train_and_score(arguments.pop("run"), Budget(**arguments.pop("budget")), **paths, **arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
