"""The study's phases: screen every configuration at one seed under the scheduler, train
the finalists (and mirrors, and baselines) at every seed, write a row per finished run.

1. Screen: every configuration at the screening seed, pruned by ASHA on the dev NER F1
   (scheduler.py; 0000 and 1111 are never pruned).
2. Finalists: 0000, 1111 and the best ``finalists`` others by final dev NER F1, each at
   every seed at the full budget (the screening run is the screening seed's), the
   ``mirrors`` at every seed whatever the screen said (chosen before any test score is
   seen; a screening run that finished is theirs too), and the baselines (trained to
   convergence: patience on dev).
3. Rows: each finished finalist, mirror and baseline with its test scores and per-document
   counts; a screened-out configuration with dev scores only (its test set is never read).

Interrupted (Ctrl+C, a lost machine, ``stop_after``): the same call resumes. On the same
machine each phase's Tune experiment under ``work/tune`` is restored; on another (no
``work``), a phase's experiment is made of the runs the ledger lacks, and the scheduler
prunes against the committed rungs. Rows already in the CSV are not written again.
"""

import json
import math
import sys
from pathlib import Path
from typing import Any

from ..rows import append_counts, append_row, make_row, pct, read_rows, replace_row, row_key
from ..runs import CONFIGS_DIR, DECODER, STUDY_CONFIGS, run_name
from ..trial import corpus_words
from .ledger import Ledger, stopped_runs

ANCHORS = ("0000", "1111")
BASELINES = ("spacy-cnn",)
# The exit status of a study cut short by Ctrl+C (128 + SIGINT), so that `spacy project
# run` stops there instead of reporting on a phase that did not end.
INTERRUPTED = 130


def with_anchors(specs: list[str]) -> list[str]:
    """The anchors first: they fill the rungs that the others are compared against."""
    return list(ANCHORS) + [s for s in specs if s not in ANCHORS]


def plan_budget(
    *,
    train_words: int,
    epochs: float,
    evals_per_epoch: float,
    grace_epochs: float,
    steps: int,
    batch_words: int,
    baseline_epochs: float,
    baseline_steps: int,
) -> dict[str, int]:
    """Rounds (dev evaluations), steps and evaluation frequency of the full budget."""
    rounds = max(1, round(epochs * evals_per_epoch))
    grace = max(1, min(rounds, round(grace_epochs * evals_per_epoch)))
    total = steps or max(rounds, round(epochs * math.ceil(train_words / batch_words)))
    every = max(1, total // rounds)
    baseline_every = max(1, round(math.ceil(train_words / batch_words) / evals_per_epoch)) if not steps else every
    return {
        "rounds": rounds,
        "grace": grace,
        "max_steps": every * rounds,
        "eval_frequency": every,
        "baseline_steps": baseline_steps or baseline_every * round(baseline_epochs * evals_per_epoch),
        "baseline_eval_frequency": baseline_every,
    }


def runs_for(specs: list[str], seeds: list[int], phase: str) -> list[dict[str, Any]]:
    return [{"model": DECODER, "unmask": spec, "seed": seed, "phase": phase} for seed in seeds for spec in specs]


def mirror_runs(mirrors: list[str], seeds: list[int], screened: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mirrors at every seed, but where the screen's trial of one finished its budget:
    that trial is its run at the screen's seed, as it is a finalist's."""
    finished = {(o["run"]["unmask"], o["run"]["seed"]) for o in screened if o["status"] == "finished"}
    return [r for r in runs_for(mirrors, seeds, "final") if (r["unmask"], r["seed"]) not in finished]


def phase_outcomes(
    phase: str, runs: list[dict[str, Any]], grid: Any, setup: dict[str, Any], ledger: Ledger, rungs: Path | None = None
) -> list[dict[str, Any]]:
    """Every run of a phase that ended: the ledger's, then this machine's experiment's
    (finished and pruned ones added to the ledger if the callback missed them); one per run."""
    from .tune import outcomes

    found = {run_name(o["run"]): o for o in ledger.outcomes(phase, runs)}
    for o in outcomes(grid, setup, stopped_runs(rungs)) if grid is not None else []:
        if run_name(o["run"]) in found:
            continue
        if o["status"] in ("finished", "pruned"):
            ledger.add(phase, setup, o)
        found[run_name(o["run"])] = o
    return [found[run_name(r)] for r in runs if run_name(r) in found]


def select_finalists(screened: list[dict[str, Any]], n: int) -> list[str]:
    """The anchors and the best n other configurations by final dev NER F1."""
    others = [o for o in screened if o["status"] == "finished" and o["run"]["unmask"] not in ANCHORS]
    others.sort(key=lambda o: -o["metrics"].get("ents_f", 0.0))
    return list(ANCHORS) + [o["run"]["unmask"] for o in others[:n]]


def outcome_record(o: dict[str, Any], setup: dict[str, Any], train_words: int) -> dict[str, Any]:
    """A finished outcome's record, complete: trials recorded before the one harness did not
    record their config, budget and words (the last report's words stand for them)."""
    from .tune import budget_of

    budget = budget_of(o["run"], setup)
    return {
        "run": o["run"],
        "config": STUDY_CONFIGS[o["run"]["model"]],
        "train_words": train_words,
        "words": o["metrics"].get("words"),
        "budget": {"max_steps": budget.max_steps, "batch_words": budget.batch_words, "dev_docs": 0, "test_docs": 0},
        **o["record"],
    }


def write_rows(
    ended: list[dict[str, Any]],
    finalists: list[str],
    setup: dict[str, Any],
    train_words: int,
    csv_path: Path,
    counts_path: Path,
) -> None:
    """A CSV row per finished trial not yet there: a finalist's (or a baseline's) with the test
    scores its trial read once, and its per-document counts; a screened-out configuration's
    with dev scores only (its test set is never read)."""
    done = {row_key(r): r for r in read_rows(csv_path)}
    for o in ended:
        if o["status"] != "finished":
            continue
        record = outcome_record(o, setup, train_words)
        scored = o["run"]["model"] != DECODER or o["run"]["unmask"] in finalists
        row = make_row(record, metrics=o["metrics"], test=scored)
        key = row_key(row)
        # A screened run's dev-only row takes its test scores once a later session names
        # the configuration a mirror: the same trial, at the same seed and budget.
        gains_test = key in done and scored and not done[key]["test_ner_f1"]
        if key in done and not gains_test:
            continue
        if scored:
            append_counts(counts_path, row, record["scores"])
        if gains_test:
            replace_row(csv_path, row)
        else:
            append_row(csv_path, row)
        done[key] = row
        print(
            f"-> {row['model']} {row['unmask']} seed {row['seed']}: dev NER {row['dev_ner_f1'] or row['dev_ner_f1_training']}"
            + (
                f", test NER {row['test_ner_f1']} chunks {row['test_chunk_f1']} POS {row['test_tag_acc']}"
                if scored
                else ""
            ),
            flush=True,
        )


def cut_short(phase: str, runs: list[dict[str, Any]], ended: list[dict[str, Any]]) -> bool:
    """Whether an experiment returned with runs of the phase neither finished, pruned nor
    failed (Tune returns like this after Ctrl+C): then the phase has not ended, and no
    finalist may be chosen from it."""
    open_runs = len(runs) - sum(o["status"] in ("finished", "pruned", "error") for o in ended)
    if open_runs:
        print(
            f"{phase}: interrupted with {open_runs} run(s) unfinished; run the same command again to resume",
            file=sys.stderr,
            flush=True,
        )
    return open_runs > 0


def run_study(
    *,
    corpus: Path,
    specs: list[str],
    seeds: list[int],
    mirrors: list[str],
    baselines: list[str],
    budget_options: dict[str, Any],
    reduction_factor: float,
    finalists: int,
    baseline_patience: int,
    base_model: str,
    text_scores: bool,
    ray_options: dict[str, Any],
    stop_after: int,
    work: Path,
    csv: Path,
    counts: Path,
    screening: Path,
    ledger: Path,
    rungs: Path,
) -> int:
    """Run (or resume) the study; 0 when it ended, INTERRUPTED when a phase was cut short.

    budget_options: plan_budget's options but train_words; ray_options: tune.init_ray's.
    """
    from .scheduler import AnchoredASHA
    from .scheduler import rungs as rung_rounds
    from .tune import finished_count, fit, init_ray, ledger_callback, stop_after_callback, stopped

    corpus = Path(corpus).resolve()
    missing = [n for n in ("train.spacy", "dev.spacy", "test.spacy") if not (corpus / n).exists()]
    if missing:
        raise SystemExit(f"{corpus}: missing {missing}; run `spacy project run prepare-conll03` first")
    specs = with_anchors(specs)
    screen_seed = seeds[0]
    train_words = corpus_words(corpus / "train.spacy")
    budget = plan_budget(train_words=train_words, **budget_options)
    batch_words = budget_options["batch_words"]
    work = Path(work).resolve()
    setup = {
        "corpus": str(corpus),
        "work": str(work / "runs"),
        "configs": str(CONFIGS_DIR),
        "base_model": base_model,
        "batch_words": batch_words,
        "max_steps": budget["max_steps"],
        "eval_frequency": budget["eval_frequency"],
        "baseline_steps": budget["baseline_steps"],
        "baseline_eval_frequency": budget["baseline_eval_frequency"],
        "baseline_patience": budget["baseline_eval_frequency"] * baseline_patience,
        "text_scores": text_scores,
    }
    rounds = rung_rounds(budget["grace"], budget["rounds"], reduction_factor)
    print(
        f"study: {len(specs)} configurations, seeds {seeds} (screening at seed {screen_seed}); budget "
        f"{budget['max_steps']} steps x {batch_words} words ~ {budget['max_steps'] * batch_words / train_words:.2f} "
        f"epochs; dev evaluated every {budget['eval_frequency']} steps; ASHA rungs at rounds {rounds}",
        flush=True,
    )
    resources = init_ray(**ray_options)
    storage = work / "tune"
    stopper = stop_after_callback(stop_after)
    book = Ledger(ledger, setup)

    def pending(phase, runs):
        done = book.entries(phase)
        if done:
            print(
                f"{phase}: {sum(run_name(r) in done for r in runs)} of {len(runs)} run(s) already in {ledger}",
                flush=True,
            )
        return [r for r in runs if run_name(r) not in done]

    def interrupted() -> int:
        print(f"study interrupted after {finished_count()}; run the same command again to resume", flush=True)
        return 0

    # 1. Screening, pruned by ASHA (the anchors never).
    scheduler = AnchoredASHA(
        max_t=budget["rounds"], grace_period=budget["grace"], reduction_factor=reduction_factor, state_file=rungs
    )
    screen_runs = runs_for(specs, [screen_seed], "screen")
    grid = fit(
        "screen",
        pending("screen", screen_runs),
        setup,
        resources,
        storage,
        scheduler,
        [stopper, ledger_callback(ledger, "screen", rungs)],
    )
    if stopped():
        return interrupted()
    screened = phase_outcomes("screen", screen_runs, grid, setup, book, rungs)
    if cut_short("screen", screen_runs, screened):
        return INTERRUPTED
    chosen = select_finalists(screened, finalists)
    screening.parent.mkdir(parents=True, exist_ok=True)
    screening.write_text(
        json.dumps(
            {
                "rungs": rounds,
                "rounds": budget["rounds"],
                "eval_frequency": budget["eval_frequency"],
                "finalists": chosen,
                "trials": {
                    o["run"]["unmask"]: {
                        "status": o["status"],
                        "eval_rounds": o["eval_round"],
                        "dev_ner_f1": pct(o["metrics"].get("ents_f")),
                        "train_seconds": (o["record"] or {}).get("train_seconds"),
                    }
                    for o in screened
                },
            },
            indent=1,
        )
        + "\n"
    )
    print(
        f"screening: {sum(o['status'] == 'finished' for o in screened)} finished, "
        f"{sum(o['status'] == 'pruned' for o in screened)} pruned; finalists {chosen}",
        flush=True,
    )

    # 2. Finalists at the other seeds, and the baselines.
    mirrors = [m for m in mirrors if m not in chosen]
    if mirrors:
        print(f"mirrors trained at every seed as references: {mirrors}", flush=True)
    # Mirrors first: everything else of this phase may have ended in an earlier session.
    other_seeds = [s for s in seeds if s != screen_seed]
    final_runs = mirror_runs(mirrors, seeds, screened) + runs_for(chosen, other_seeds, "final")
    scored = chosen + mirrors
    final_runs += [{"model": b, "unmask": b, "seed": s, "phase": "final"} for s in seeds for b in baselines]
    finals: list[dict[str, Any]] = []
    if final_runs:
        # The rows of what has ended land before more trains (see 3.).
        write_rows(screened + book.outcomes("final", final_runs), scored, setup, train_words, csv, counts)
        grid = fit(
            "final",
            pending("final", final_runs),
            setup,
            resources,
            storage,
            None,
            [stopper, ledger_callback(ledger, "final", None)],
        )
        finals = phase_outcomes("final", final_runs, grid, setup, book)

    # 3. Rows: test scores of the finished finalists, dev only for the others. They land even
    # when the final phase was interrupted (the finalists are chosen), so that a study spread
    # over several sessions is reported, and committed, as it goes.
    write_rows(screened + finals, scored, setup, train_words, csv, counts)
    if stopped():
        return interrupted()
    if final_runs and cut_short("final", final_runs, finals):
        return INTERRUPTED
    failed = [o for o in screened + finals if o["status"] == "error"]
    if failed:
        print(f"{len(failed)} trial(s) did not finish; run the command again to retry them", file=sys.stderr)
        return 1
    return 0
