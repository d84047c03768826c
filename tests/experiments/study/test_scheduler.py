"""The study's scheduler and logger: ASHA prunes, the anchors run to the end, the rungs
survive a restart; spaCy evaluations reach Tune through spacy-cmllm.TuneLogger.v1."""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.requirements import require

require("ray.tune")

import spacy  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402
from spacy.util import registry  # noqa: E402

from experiments.study.logger import tune_logger  # noqa: E402
from experiments.study.scheduler import AnchoredASHA, rungs  # noqa: E402

ROOT = Path(__file__).parents[3]
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def trial(unmask, trial_id=None, model="smollm2"):
    return SimpleNamespace(trial_id=trial_id or unmask, config={"run": {"model": model, "unmask": unmask}})


def feed(scheduler, t, round_, f1):
    return scheduler.on_trial_result(None, t, {"eval_round": round_, "ents_f": f1})


def test_rungs():
    assert rungs(2, 4) == [2, 4]
    assert rungs(1, 2) == [1, 2]
    assert rungs(2, 16, 2) == [2, 4, 8, 16]


def test_below_the_median_is_stopped_but_never_an_anchor(tmp_path):
    scheduler = AnchoredASHA(max_t=4, grace_period=2, state_file=tmp_path / "rungs.json")
    trials = [trial(u) for u in ("0000", "1111", "0011", "0001")]
    for t in trials:
        scheduler.on_trial_add(None, t)
    # No decision before the grace period, however bad the score.
    assert feed(scheduler, trials[3], 1, 0.0) == CONTINUE
    assert feed(scheduler, trials[0], 2, 0.5) == CONTINUE
    # 1111 is below the median of {0.5, 0.1}: ASHA says STOP, the anchor goes on.
    assert feed(scheduler, trials[1], 2, 0.1) == CONTINUE
    assert feed(scheduler, trials[2], 2, 0.6) == CONTINUE
    assert feed(scheduler, trials[3], 2, 0.0) == STOP
    # At the final round nothing is stopped: the trial ends by itself, its model saved.
    assert feed(scheduler, trials[2], 4, 0.0) == CONTINUE
    # The rungs are kept on disk and read back by a new scheduler (a resumed study).
    saved = json.loads((tmp_path / "rungs.json").read_text())
    assert saved["2"] == {"0000": 0.5, "1111": 0.1, "0011": 0.6, "0001": 0.0}
    again = AnchoredASHA(max_t=4, grace_period=2, state_file=tmp_path / "rungs.json")
    late = trial("0101")
    again.on_trial_add(None, late)
    assert feed(again, late, 2, 0.2) == STOP  # below the median of the five
    # The baseline is not an anchor, whatever its name.
    assert not again.is_anchor({"run": {"model": "spacy-cnn", "unmask": "1111"}}["run"])


def test_logger_reports_each_evaluation_with_its_round():
    sent = []
    setup = registry.loggers.get("spacy-cmllm.TuneLogger.v1")(console=False)
    assert setup.__module__ == "experiments.study.logger"
    log_step, finalize = tune_logger(console=True, report=sent.append)(spacy.blank("en"), io.StringIO(), io.StringIO())
    log_step(None)
    for step, f1 in ((0, 0.1), (5, 0.4)):
        log_step(
            {
                "score": f1,
                "other_scores": {"ents_f": f1, "ents_per_type": {"PER": {}}, "tag_acc": 0.9, "x": None},
                "step": step,
                "epoch": 0,
                "words": 10 * step,
                "seconds": 1,
                "losses": {},
                "checkpoints": [],
            }
        )
    finalize()
    assert [r["eval_round"] for r in sent] == [0, 1]
    assert sent[1] == {
        "ents_f": 0.4,
        "tag_acc": 0.9,
        "score": 0.4,
        "step": 5,
        "epoch": 0,
        "words": 50,
        "seconds": 1,
        "eval_round": 1,
    }


def scripted_trial(params):
    """A Tune trainable that replays scripted dev scores through the study's logger."""
    from experiments.study.logger import tune_logger

    log_step, finalize = tune_logger(console=False)(None, io.StringIO(), io.StringIO())
    for step, f1 in enumerate(params["run"]["scores"]):
        log_step({"score": f1, "other_scores": {"ents_f": f1}, "step": step, "epoch": 0, "words": step, "seconds": 0})
    finalize()
    Path(params["out"], params["run"]["unmask"]).write_text("finished")


@pytest.mark.slow
def test_through_tune_a_pruned_trial_stops_and_anchors_finish(tmp_path):
    ray = require("ray")
    from ray import tune

    ray.init(
        num_cpus=1, include_dashboard=False, logging_level="ERROR", runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}
    )
    try:
        runs = [
            {"unmask": "0000", "model": "smollm2", "scores": [0.5, 0.5, 0.5]},
            {"unmask": "1111", "model": "smollm2", "scores": [0.1, 0.1, 0.1]},
            {"unmask": "0011", "model": "smollm2", "scores": [0.6, 0.6, 0.6]},
            {"unmask": "0001", "model": "smollm2", "scores": [0.0, 0.0, 0.0]},
        ]
        tuner = tune.Tuner(
            scripted_trial,
            param_space={"run": tune.grid_search(runs), "out": str(tmp_path)},
            tune_config=tune.TuneConfig(scheduler=AnchoredASHA(max_t=2, grace_period=1), max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
        )
        results = {r.config["run"]["unmask"]: r for r in tuner.fit()}
    finally:
        ray.shutdown()
    assert {u: r.metrics["eval_round"] for u, r in results.items()} == {"0000": 2, "1111": 2, "0011": 2, "0001": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tune") == ["0000", "0011", "1111"]


def run_trial(unmask, trial_id):
    return SimpleNamespace(
        trial_id=trial_id, config={"run": {"model": "smollm2", "unmask": unmask, "seed": 0, "phase": "screen"}}
    )


def test_rungs_are_kept_by_run_name_and_survive_a_restore_elsewhere(tmp_path):
    import pickle

    state = tmp_path / "rungs.json"
    first = AnchoredASHA(max_t=4, grace_period=2, state_file=state)
    # Pickled as Tune pickles it when the experiment begins: before any result.
    pickled = pickle.dumps(first)
    for unmask, f1 in (("0000", 0.5), ("1111", 0.4), ("0011", 0.1)):
        t = run_trial(unmask, f"id-{unmask}")
        first.on_trial_add(None, t)
        expected = STOP if unmask == "0011" else CONTINUE
        assert feed(first, t, 2, f1) == expected
    saved = json.loads(state.read_text())
    assert saved["2"] == {"screen-smollm2-0000-s0": 0.5, "screen-smollm2-1111-s0": 0.4, "screen-smollm2-0011-s0": 0.1}
    assert saved["stopped"] == ["screen-smollm2-0011-s0"]
    # A restored experiment unpickles the scheduler of its start: it reads the rungs back.
    restored = pickle.loads(pickled)
    assert restored.recorded()["2"] == saved["2"] and restored.stopped() == saved["stopped"]
    # 0011 trains again from its start under a new trial id (a fresh checkout): its earlier
    # attempt's record is replaced, not counted twice, and it is no longer listed as stopped.
    again = run_trial("0011", "new-id")
    restored.on_trial_add(None, again)
    assert feed(restored, again, 1, 0.3) == CONTINUE
    assert "screen-smollm2-0011-s0" not in restored.recorded()["2"] and restored.stopped() == []
    assert feed(restored, again, 2, 0.45) == CONTINUE  # above the median of {0.5, 0.4}
    assert json.loads(state.read_text())["2"]["screen-smollm2-0011-s0"] == 0.45
