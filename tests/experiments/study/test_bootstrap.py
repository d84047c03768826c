"""The bootstrap over documents: a case computed by hand, and agreement with seqeval."""

import numpy
import pytest
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from experiments.study import bootstrap

# Three documents' (tp, predicted, gold) entity counts.
DOCS = numpy.array([[1, 1, 1], [0, 1, 1], [2, 2, 2]])


def test_interval_from_hand_picked_resamples():
    # F1 = 2 tp / (predicted + gold) over the drawn documents:
    #   [0, 0, 0] -> 6/6 = 1.0;  [1, 1, 1] -> 0/6 = 0.0
    #   [0, 1, 2] -> 6/8 = 0.75; [2, 2, 1] -> 8/10 = 0.8
    weights = bootstrap.weights_from_indices(numpy.array([[0, 0, 0], [1, 1, 1], [0, 1, 2], [2, 2, 1]]), 3)
    assert weights.tolist() == [[3, 0, 0], [0, 3, 0], [1, 1, 1], [0, 1, 2]]
    values = bootstrap.resampled_scores([DOCS], weights)[:, 0]
    assert values.tolist() == pytest.approx([1.0, 0.0, 0.75, 0.8])
    # Sorted 0, .75, .8, 1; linear percentiles at positions .025*3 = .075 and .975*3 = 2.925:
    #   0 + .075 * .75 = .05625 and .8 + .925 * .2 = .985
    assert bootstrap.interval(values) == pytest.approx([0.05625, 0.985])
    # Two seeds: the interval is of their mean, resample by resample.
    # The second seed per resample: 6/6 = 1, 6/6 = 1, 4/8 = .5, 2/10 = .2; the means:
    # 1, .5, .625, .5 -> sorted .5, .5, .625, 1 -> [.5, .625 + .925 * .375 = .971875]
    other = numpy.array([[1, 1, 1], [1, 1, 1], [0, 2, 2]])
    assert bootstrap.mean_interval([DOCS, other], weights) == pytest.approx([0.5, 0.971875])


def test_paired_difference_is_seed_by_seed():
    weights = bootstrap.weights_from_indices(numpy.array([[0, 1, 2], [0, 0, 0]]), 3)
    runs = {0: DOCS, 1: DOCS}
    refs = {0: numpy.array([[0, 1, 1], [0, 1, 1], [2, 2, 2]]), 1: DOCS, 2: DOCS}
    diff = bootstrap.paired_difference(runs, refs, weights)
    # Full set: seed 0: 6/8 - 4/8 = .25; seed 1: 0. Resample [0,0,0]: 1 - 0 and 0 -> mean .5
    assert diff["seeds"] == [0, 1] and diff["per_seed"] == pytest.approx([0.25, 0.0])
    assert diff["mean"] == pytest.approx(0.125) and diff["wins"] == 1
    assert diff["ci"] == pytest.approx(bootstrap.interval(numpy.array([0.125, 0.5])))
    assert bootstrap.paired_difference({3: DOCS}, refs, weights) is None


def test_counts_add_up_to_seqeval_on_any_resample():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"], ["B-MISC", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG"], ["B-MISC", "O", "B-LOC"]]
    counts = numpy.array([bootstrap.span_counts(g, p) for g, p in zip(gold, pred)])
    assert counts.tolist() == [[1, 1, 2], [0, 1, 1], [1, 2, 2]]
    rng = numpy.random.default_rng(1)
    for _ in range(5):
        drawn = rng.integers(0, 3, size=3)
        expected = f1_score([gold[i] for i in drawn], [pred[i] for i in drawn], mode="strict", scheme=IOB2)
        weights = bootstrap.weights_from_indices(drawn[None, :], 3)
        assert bootstrap.resampled_scores([counts], weights)[0, 0] == pytest.approx(expected)


def test_resamples_are_seeded():
    a = bootstrap.resample_weights(10, 50, seed=3)
    assert a.shape == (50, 10) and (a.sum(axis=1) == 10).all()
    assert (a == bootstrap.resample_weights(10, 50, seed=3)).all()
    assert bootstrap.accuracy_from_counts(numpy.array([3, 4])) == pytest.approx(0.75)
