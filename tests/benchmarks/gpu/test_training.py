"""The train stage's stop at its deadline, right after an evaluation."""

import pytest

from benchmarks.gpu import training


def test_training_stops_at_its_deadline_right_after_an_evaluation():
    infos, stamps = [], []
    logger, callback = training.train_callbacks(train_deadline=0.0, every=10, infos=infos, stamps=stamps)
    from spacy.util import registry

    before_update = registry.callbacks.get(callback["@callbacks"])()
    before_update(None, {"step": 0, "epoch": 0})  # past the deadline, but nothing trained yet
    with pytest.raises(training.TimeUp):  # right after the evaluation at step 0
        before_update(None, {"step": 1, "epoch": 0})
    _, callback = training.train_callbacks(train_deadline=0.0, every=10, infos=[], stamps=stamps)
    before_update = registry.callbacks.get(callback["@callbacks"])()
    for step in range(2, 11):  # not right after an evaluation: no stop, however late
        before_update(None, {"step": step, "epoch": 0})
    with pytest.raises(training.TimeUp):
        before_update(None, {"step": 11, "epoch": 0})
    _, callback = training.train_callbacks(train_deadline=float("inf"), every=10, infos=[], stamps=[])
    before_update = registry.callbacks.get(callback["@callbacks"])()
    for step in range(25):  # before the deadline: never
        before_update(None, {"step": step, "epoch": 0})
    assert len(stamps) == 2 + 10
    log_step, finalize = registry.loggers.get(logger["@loggers"])()(None, None, None)
    log_step(None)
    log_step({"step": 10, "words": 500, "losses": {"ner": 3.0}, "score": 0.1})
    assert infos == [{"step": 10, "words": 500, "losses": {"ner": 3.0}}]
    assert training.eval_frequency(100) == 10 and training.eval_frequency(2) == 2
