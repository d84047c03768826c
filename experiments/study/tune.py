"""The study on Ray Tune: the trainable (one run of the core per trial), Ray's start, one
Tune experiment per phase, and the callbacks that stop a study resumably and keep its ledger.

A trial's parameters are ``{"run": {...}, "setup": {...}}``: ``run`` says what differs
between trials (model, unmask, seed, phase), ``setup`` what the study fixes (corpus,
budget, base model, where runs live). The trainable is trial.train_and_score with the
logger ``spacy-cmllm.TuneLogger.v1``, which reports every full-dev evaluation to Tune,
where the scheduler may stop the trial (spaCy's evaluation after the first update is
skipped: no rung reads it). Ray is imported here and in scheduler.py only.
"""

import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs import DECODER, ROOT, STUDY_CONFIGS, Budget, child_pythonpath, run_name
from ..trial import read_record, train_and_score
from .ledger import Ledger, stopped_runs
from .logger import NAME as TUNE_LOGGER

LOGGER = {"training.logger.@loggers": TUNE_LOGGER, "training.logger.progress_bar": False}


def budget_of(run: dict[str, Any], setup: dict[str, Any]) -> Budget:
    """Decoder runs get the study's fixed budget; the CNN baseline its own (longer) one,
    with patience, to converge, scored at its best checkpoint."""
    if run["model"] == DECODER:
        return Budget(
            max_steps=setup["max_steps"],
            batch_words=setup["batch_words"],
            eval_frequency=setup["eval_frequency"],
            patience=0,
            max_epochs=0,
        )
    return Budget(
        max_steps=setup["baseline_steps"],
        batch_words=setup["batch_words"],
        eval_frequency=baseline_eval_frequency(setup),
        patience=setup["baseline_patience"],
        max_epochs=0,
        best_checkpoint=True,
    )


def baseline_eval_frequency(setup: dict[str, Any]) -> int:
    # Experiments begun before the one harness kept it as a config override of the baseline.
    older = setup.get("overrides", {}).get("spacy-cnn", {}).get("training.eval_frequency")
    return setup.get("baseline_eval_frequency") or older or setup["eval_frequency"]


def train_trial(params: dict[str, Any]) -> None:
    """The Tune trainable: train and score one run; evaluations reach Tune through the logger."""
    run, setup = params["run"], params["setup"]
    train_and_score(
        run,
        budget_of(run, setup),
        config=STUDY_CONFIGS[run["model"]],
        corpus=Path(setup["corpus"]),
        out=Path(setup["work"]) / run_name(run),
        base_model=setup["base_model"],
        logger=LOGGER,
        configs=Path(setup.get("configs", ROOT / "configs")),
        use_gpu=_spacy_gpu(),
        text_scores=setup.get("text_scores", False),
        skip_first_evaluation=True,
    )


def read_trial(setup: dict[str, Any], run: dict[str, Any]) -> dict[str, Any] | None:
    return read_record(Path(setup["work"]) / run_name(run))


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


def _assigned_gpus() -> list[int | str]:
    try:
        import ray

        # get_gpu_ids() would start a Ray of its own outside a trial.
        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # not inside Ray
        return []


def init_ray(
    *, address: str | None, cpus: int, cpus_per_trial: int, gpus_per_trial: int | None, concurrent: int
) -> dict[str, Any]:
    """Start Ray locally (default) or join ``address``; decide each trial's resources."""
    import ray

    env = {"env_vars": {"PYTHONPATH": child_pythonpath()}}
    if address:
        ray.init(address=address, runtime_env=env, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=cpus or os.cpu_count(),
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env=env,
            ignore_reinit_error=True,
        )
    total = ray.cluster_resources()
    gpus = 1 if total.get("GPU", 0) >= 1 and gpus_per_trial != 0 else 0
    per_trial = cpus_per_trial or (int(total.get("CPU", 1)) if not address else 4)
    if concurrent:  # at most N at a time: each trial holds 1/N of the CPUs
        per_trial = max(1, min(per_trial, int(total.get("CPU", 1)) // concurrent))
    at_a_time = max(1, int(total.get("CPU", 1)) // per_trial)
    if gpus:
        at_a_time = min(at_a_time, int(total.get("GPU", 0)))
    print(f"ray: {dict(total)}; each trial {per_trial} CPU(s), {gpus} GPU(s); {at_a_time} at a time", flush=True)
    return {"cpu": per_trial, "gpu": gpus, "concurrent": at_a_time}


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


def finished_count() -> str:
    return f"{os.environ.get(DONE)} finished trial(s) (--stop-after {os.environ.get(LIMIT)})"


def ledger_callback(path: Path, phase: str, rungs: Path | None) -> Any:
    """A Tune callback that adds each trial to the ledger as it ends: finished (it wrote its
    record) or pruned (the scheduler's state lists it as stopped). A trial that failed, or
    was paused by an interruption, is not added: it will train again."""
    from ray.tune import Callback

    # Strings: the callback is pickled into Ray's workers.
    ledger, rungs_file = str(Path(path).resolve()), str(Path(rungs).resolve()) if rungs else None

    class AddToLedger(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            run, setup = trial.config["run"], trial.config["setup"]
            record = read_trial(setup, run)
            if record is None and run_name(run) not in stopped_runs(rungs_file):
                return
            outcome = {
                "run": run,
                "status": "finished" if record else "pruned",
                "metrics": trial.last_result or {},
                "record": record,
            }
            Ledger(Path(ledger), setup).add(phase, setup, outcome)

    return AddToLedger()


def fit(
    name: str,
    runs: list[dict[str, Any]],
    setup: dict[str, Any],
    resources: dict[str, Any],
    storage: Path,
    scheduler: Any,
    callbacks: list[Any],
) -> Any:
    """Run (or resume) one Tune experiment whose trials are `runs`; returns its ResultGrid,
    or None when there is nothing to run (every run already in the ledger)."""
    from ray import tune

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
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=0),
                verbose=1,
            ),
        )
    return tuner.fit()


def outcomes(grid: Any, setup: dict[str, Any], stopped: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per trial of an experiment: its run, status, last round and dev scores.
    finished = trained to the end of its budget (it wrote trial.json); error = failed;
    pruned = the scheduler stopped it (``stopped``: its state's list); otherwise the
    experiment was interrupted (Ctrl+C) while the trial trained or waited: unfinished."""
    result = []
    for trial in grid:
        if not trial.config:  # never started
            continue
        run = trial.config["run"]
        record = read_trial(setup, run)
        status = (
            "finished"
            if record is not None
            else "error"
            if trial.error is not None
            else "pruned"
            if run_name(run) in stopped
            else "unfinished"
        )
        metrics = trial.metrics or {}
        result.append(
            {
                "run": run,
                "status": status,
                "eval_round": metrics.get("eval_round"),
                "metrics": metrics,
                "record": record,
            }
        )
    return result
