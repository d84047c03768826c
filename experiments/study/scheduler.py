"""Successive halving for the study: Tune's ASHA, except that the anchors run to the end.

The rungs, and why
------------------
A trial's clock is ``eval_round``: one round = one evaluation on the FULL dev set, every
``1 / evals_per_epoch`` of an epoch (default 4 per epoch, so a round is a quarter epoch
of CoNLL-2003, about 51 steps of 1,000 words). With ``grace_period`` = 2 rounds (half an
epoch), ``reduction_factor`` = 2 and ``max_t`` = 4 rounds (one epoch):

* rung 0, after 2 rounds (0.5 epoch): a trial below the median dev NER F1 of the trials
  that reached this rung before it is stopped; the better half continues.
* rung 1, after 4 rounds (1 epoch, the full budget): the end; the survivors are scored.

The first decision waits half an epoch because output-side configurations (e.g. ``0011``,
``0001``) start slower than input-side ones: after a few dozen steps the ranking mostly
says which configurations warm up fastest, not which end best, and a configuration
would be pruned for starting slowly. Half an epoch is also where the adapters' cosine
schedule has passed its peak rate, so every trial has had its strongest updates.

Cost, with n configurations screened: rung 0 costs n x 0.5 epoch, rung 1 about n/2 x 0.5
epoch, so a screen costs about 0.75 n epochs instead of n (plus 4 dev evaluations per
full trial, each about a twelfth of an epoch's training time on a CPU).

Resuming
--------
Tune's restore brings back the scheduler as it was pickled when the experiment began, so
the rungs' recorded results are kept in ``state_file`` (JSON) and read back, both by a new
scheduler and by a restored one: a resumed study prunes against the trials that ran before
the interruption, on this machine or, with the state file committed, on another. Records
are saved under the trial's run name (``screen-smollm2-0011-s0``), not Tune's trial id,
which a new experiment does not keep; a run that trains again from its start replaces the
records of its interrupted attempt instead of counting twice. The file also lists the runs
the scheduler stopped (``"stopped"``): a trial that ended without finishing its budget was
pruned only if it is listed there.

Anchors
-------
``0000`` (causal) and ``1111`` (fully unmasked) are the references every comparison is
made against, so they are never pruned: their results still fill the rungs (they set
the cutoffs for the others), but a STOP for them is turned into CONTINUE. Nor is a trial
stopped at its final round: it ends by itself when spaCy's loop reaches ``max_steps``, so
that its last evaluation and its saved model are complete.
"""

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

ANCHORS = ("0000", "1111")
TIME_ATTR = "eval_round"
METRIC = "ents_f"


def rungs(grace_period: int, max_t: int, reduction_factor: float = 2) -> list:
    """The rounds at which ASHA decides, then the final round: rungs(2, 4) == [2, 4]."""
    milestones = []
    t: float = grace_period
    while t < max_t:
        milestones.append(int(t))
        t *= reduction_factor
    return milestones + [max_t]


class AnchoredASHA(AsyncHyperBandScheduler):
    """ASHA on ``eval_round`` and the dev NER F1 (``ents_f``, mode max) that never stops a
    trial whose run's ``unmask`` is an anchor, nor any trial at its final round.

    ``ents_f`` is spaCy's exact-match span F1; on the valid IOB2 sequences the heads write
    it equals seqeval's strict micro F1, and unlike ``ents_seqeval_f`` it is never None."""

    def __init__(
        self,
        *,
        max_t: int,
        grace_period: int,
        reduction_factor: float = 2,
        metric: str = METRIC,
        anchors: Collection[str] = ANCHORS,
        time_attr: str = TIME_ATTR,
        state_file: str | Path | None = None,
    ) -> None:
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode="max",
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            stop_last_trials=False,
        )
        self.anchors = tuple(anchors)
        self.state_file = str(Path(state_file).resolve()) if state_file else None
        self._names: dict[str, str] = {}
        self._stopped: list[str] = []
        self._load()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A restored experiment unpickles the scheduler as it was when the experiment began.
        self.__dict__.update(state)
        self._load()

    def _load(self) -> None:
        if not (self.state_file and Path(self.state_file).exists()):
            return
        saved = json.loads(Path(self.state_file).read_text())
        for milestone, recorded in self._brackets[0]._rungs:
            recorded.update(saved.get(str(milestone), {}))
        self._stopped = sorted(set(self._stopped) | set(saved.get("stopped", [])))

    def name(self, trial) -> str:
        """The key a trial's records are saved under: its run's name, else its trial id."""
        from ..runs import run_name

        run = (getattr(trial, "config", None) or {}).get("run") or {}
        try:
            return run_name(run)
        except KeyError:
            return trial.trial_id

    def recorded(self) -> dict[str, dict[str, float]]:
        """Per rung (its round, as a string), the metric of each run recorded there."""
        return {
            str(milestone): {self._names.get(key, key): value for key, value in recorded.items()}
            for milestone, recorded in self._brackets[0]._rungs
        }

    def stopped(self) -> list[str]:
        """The runs (by name) this scheduler, or the one before a restart, stopped."""
        return list(self._stopped)

    def _save(self) -> None:
        if self.state_file:
            Path(self.state_file).parent.mkdir(parents=True, exist_ok=True)
            state: dict[str, Any] = {**self.recorded(), "stopped": self._stopped}
            Path(self.state_file).write_text(json.dumps(state, indent=1) + "\n")

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def is_anchor(self, config: dict | None) -> bool:
        """Whether a trial's config (the study's {"run": {...}, ...} or the run itself) is an
        anchor: a decoder run whose unmask spec is one of the anchors."""
        run = (config or {}).get("run", config) or {}
        return run.get("model", "smollm2") == "smollm2" and run.get("unmask") in self.anchors

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        name = self.name(trial)
        if self._names.get(trial.trial_id) != name:
            # This trial's first result: an earlier attempt of the same run (interrupted,
            # now training again from its start) no longer counts.
            self._names[trial.trial_id] = name
            for _, recorded in self._brackets[0]._rungs:
                if name != trial.trial_id:
                    recorded.pop(name, None)
            self._stopped = [n for n in self._stopped if n != name]
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and (
            self.is_anchor(getattr(trial, "config", None)) or result.get(self._time_attr, 0) >= self._max_t
        ):
            action = TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            self._stopped.append(name)
        self._save()
        return action
