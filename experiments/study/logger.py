"""A spaCy training logger that reports every evaluation to Ray Tune.

spaCy's training loop evaluates on the dev corpus every ``eval_frequency`` steps (and once
after the first step) and hands the scores to the logger. This logger passes them on with
``ray.tune.report`` so that a Tune scheduler can prune on them, and optionally prints them
through spaCy's console logger. ``eval_round`` counts the evaluations after the first
(round k is the evaluation at step k x eval_frequency): the scheduler's time axis. An
evaluation without dev scores (the first one, which a study trial skips) keeps its round
but is not reported.

Registered as ``spacy-cmllm.TuneLogger.v1`` when this module is imported: the study's
trials import it (tune.py) before spaCy reads their config. It is no entry point of the
package, whose users have no study to report to; Ray itself is imported only once a
trial's logger is set up.
"""

from collections.abc import Callable
from typing import IO, Any

from spacy.util import registry

NAME = "spacy-cmllm.TuneLogger.v1"

# What every report holds besides the dev scores.
PROGRESS_KEYS = ("step", "epoch", "words", "seconds")


def flatten_scores(scores: dict[str, Any] | None) -> dict[str, float]:
    """The numeric dev scores (spaCy's fractions); per-type dicts and None are left out."""
    return {
        key: float(value)
        for key, value in (scores or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def tune_logger(console: bool = True, progress_bar: bool = False, report: Callable | None = None):
    """Build the logger's setup function (see spacy-cmllm.TuneLogger.v1).

    console (bool): also print spaCy's console table.
    progress_bar (bool): the console logger's progress bar.
    report (Optional[Callable]): where results go; None = ray.tune.report (tests pass a list's append).
    """

    def setup(nlp, stdout: IO, stderr: IO) -> tuple[Callable[[dict[str, Any] | None], None], Callable[[], None]]:
        send = report
        if send is None:
            from ray import tune

            send = tune.report
        if console:
            from spacy.training.loggers import console_logger

            console_step, console_finalize = console_logger(progress_bar=progress_bar)(nlp, stdout, stderr)
        else:
            console_step, console_finalize = (lambda info: None), (lambda: None)
        evaluations = 0

        def log_step(info: dict[str, Any] | None) -> None:
            nonlocal evaluations
            console_step(info)
            if info is None or info.get("score") is None:
                return
            metrics = flatten_scores(info.get("other_scores"))
            eval_round, evaluations = evaluations, evaluations + 1
            if not metrics:
                return
            metrics["score"] = float(info["score"])
            metrics.update({key: info[key] for key in PROGRESS_KEYS if key in info})
            metrics["eval_round"] = eval_round
            send(metrics)

        return log_step, console_finalize

    return setup


@registry.loggers(NAME)
def make_tune_logger_v1(console: bool = True, progress_bar: bool = False):
    """A training logger that reports every dev evaluation to Ray Tune (ray.tune.report):
    the numeric scores (ents_f, spans_chunks_f, tag_acc, ...), spaCy's weighted `score`,
    step, epoch, words, seconds, and `eval_round` (evaluations after the first), the clock
    of the study's successive-halving scheduler. Use inside a Tune trial only.

    console (bool): also print spaCy's console table.
    progress_bar (bool): the console logger's progress bar.
    """
    return tune_logger(console=console, progress_bar=progress_bar)
