"""The recipe sweep: unmask configurations x seeds x NER heads, plus baselines, every run
trained to the end of one fixed budget, one CSV row per finished run.

* Each run trains and is scored by trial.train_and_score in a process of its own
  (``python -m experiments.trial``: clean memory, clean seeding). The budget is max_steps x batch_by_words size, at most one
  epoch for the transformer runs. No model selection: the model at the end of the
  budget is scored, as a fixed-budget comparison needs; spaCy's evaluations while it
  trains read a single dev document, so that they cost nothing.
* Resumable: a run whose key is already in the CSV is skipped; rows are appended and
  flushed one at a time, so a killed sweep loses at most the run in progress. Runs go
  seed by seed, so a sweep cut short has every configuration at the seeds it reached.
* A run's ``overrides`` (``--set``) is part of its key: a variant of a config is its own
  configuration, never mistaken for the shipped one.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .rows import append_row, key_fields, make_row, read_rows, row_key
from .runs import DECODER, SWEEP_CONFIGS, Budget, child_pythonpath, run_name
from .trial import job, read_record

HEADS = ("bio_tagger", "parser")
BASELINES = ("spacy-cnn", "minilm")
# The sweep's logger: spaCy's console table and progress lines.
LOGGER = {"training.logger.progress_bar": True}


def plan_runs(
    specs: list[str], seeds: list[int], baselines: list[str], heads: list[str] = ["parser"], overrides: str = ""
) -> list[dict[str, Any]]:
    """The runs, seed by seed: the baselines, then every decoder configuration."""
    runs = []
    for seed in seeds:
        runs += [{"model": name, "head": "parser", "unmask": name, "seed": seed} for name in baselines]
        runs += [
            {"model": DECODER, "head": head, "unmask": spec, "overrides": overrides, "seed": seed}
            for head in heads
            for spec in specs
        ]
    return runs


def budget_for(
    run: dict[str, Any], *, max_steps: int, batch_words: int, dev_docs: int, test_docs: int, max_epochs: int = 1
) -> Budget:
    # At most ``max_epochs`` for the transformer runs (spaCy's rule: 0 = no limit): the
    # recipe's budget, a little over one epoch, stops at the epoch's end. spaCy's CNN trains
    # its config's epochs (the budget is in steps).
    return Budget(
        max_steps=max_steps,
        batch_words=batch_words,
        eval_frequency=max_steps,
        max_epochs=None if run["model"] == "spacy-cnn" else max_epochs,
        train_dev_docs=1,
        dev_docs=dev_docs,
        test_docs=test_docs,
    )


def config_of(run: dict[str, Any]) -> str:
    return SWEEP_CONFIGS[(run["model"], run["head"])]


def run_sweep(
    runs: list[dict[str, Any]],
    *,
    corpus: Path,
    csv: Path,
    work: Path,
    max_steps: int,
    batch_words: int,
    dev_docs: int,
    test_docs: int,
    base_model: str,
    gpu_id: int = -1,
    text_scores: bool = True,
    keep_models: bool = False,
    max_epochs: int = 1,
) -> int:
    """Train and score the runs not yet in ``csv``; 1 if any failed (it stays to do)."""
    missing = [name for name in ("train.spacy", "dev.spacy", "test.spacy") if not (corpus / name).exists()]
    if missing:
        raise SystemExit(f"{corpus}: missing {missing}; run `spacy project run prepare-conll03` first")
    budgets = [
        budget_for(
            run,
            max_steps=max_steps,
            batch_words=batch_words,
            dev_docs=dev_docs,
            test_docs=test_docs,
            max_epochs=max_epochs,
        )
        for run in runs
    ]
    done = {row_key(row) for row in read_rows(csv)}
    todo = [
        (run, budget)
        for run, budget in zip(runs, budgets)
        if row_key(key_fields(run, config_of(run), vars(budget))) not in done
    ]
    print(
        f"sweep: {len(runs)} runs, {len(runs) - len(todo)} already in {csv}, {len(todo)} to do; "
        f"budget {max_steps} steps x {batch_words} words"
        + (f", at most {max_epochs} epoch(s)" if max_epochs else ", no epoch limit"),
        flush=True,
    )
    durations: list[float] = []
    failed = 0
    for i, (run, budget) in enumerate(todo, 1):
        eta = f", about {statistics.mean(durations) * (len(todo) - i + 1) / 60:.0f} min left" if durations else ""
        print(
            f"\n[{i}/{len(todo)}] {run['model']} head={run['head']} unmask={run['unmask']} seed={run['seed']}{eta}",
            flush=True,
        )
        if run.get("overrides"):
            print(f"    overrides: {run['overrides']}", flush=True)
        out = work / run_name(run)
        start = time.perf_counter()
        # A process of its own per run: clean memory, clean seeding. Not a multiprocessing
        # child, which the decoder would take for a worker of nlp.pipe and hold to one thread.
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "experiments.trial",
                job(
                    run,
                    budget,
                    config=config_of(run),
                    corpus=corpus,
                    out=out,
                    base_model=base_model,
                    logger=LOGGER,
                    use_gpu=gpu_id,
                    text_scores=text_scores,
                ),
            ],
            env={**os.environ, "PYTHONPATH": child_pythonpath()},
        )
        durations.append(time.perf_counter() - start)
        record = read_record(out) if code == 0 else None
        if record is None:
            print(f"run failed (exit {code}); it stays to do for the next sweep", file=sys.stderr, flush=True)
            failed += 1
            continue
        row = make_row(record)
        append_row(csv, row)
        print(
            f"-> dev NER F1 {row['dev_ner_f1']} test NER F1 {row['test_ner_f1']} tag acc {row['test_tag_acc']}"
            + (
                f" (from raw text: {row['dev_ner_f1_text']}, {row['test_ner_f1_text']}, {row['test_tag_acc_text']})"
                if text_scores
                else ""
            )
            + f" ({row['train_seconds']} s training)",
            flush=True,
        )
        if not keep_models:
            shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0
