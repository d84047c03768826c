import itertools

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spacy_cmllm.pipeline.bio_classes import class_names, decode_spans, encode_spans, is_valid, viterbi


def score_matrices(max_len, max_types):
    """(n_tokens, 1 + 2 * n_types) score matrices, scores in [-20, 0] like log-probabilities."""
    shapes = st.tuples(st.integers(0, max_len), st.integers(0, max_types)).map(lambda s: (s[0], 1 + 2 * s[1]))
    return shapes.flatmap(
        lambda shape: arrays(numpy.float64, shape, elements=st.floats(-20.0, 0.0, allow_nan=False, width=32))
    )


def brute_force_best(scores):
    """The best total score over all valid sequences, by enumeration."""
    n, width = scores.shape
    best = -numpy.inf
    for seq in itertools.product(range(width), repeat=n):
        if is_valid(seq):
            best = max(best, scores[numpy.arange(n), list(seq)].sum())
    return best


def test_class_layout():
    assert class_names(["LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    ids = encode_spans(6, [(1, 3, 1), (3, 4, 0)])
    assert [class_names(["LOC", "PER"])[i] for i in ids] == ["O", "B-PER", "I-PER", "B-LOC", "O", "O"]
    assert decode_spans(ids) == [(1, 3, 1), (3, 4, 0)]


def test_validity():
    assert is_valid([0, 1, 2, 2, 3, 4, 0])
    assert not is_valid([2])  # starts inside a span
    assert not is_valid([0, 2])  # I- after O
    assert not is_valid([1, 4])  # I-Y after B-X
    assert not is_valid([3, 4, 2])  # I-X after I-Y


def test_decoding_repairs_what_argmax_gets_wrong():
    # Per-token argmax: I-LOC I-LOC O (invalid). The best valid path starts with B-LOC.
    log_probs = numpy.log(
        numpy.array(
            [
                [0.1, 0.3, 0.6],
                [0.1, 0.2, 0.7],
                [0.8, 0.1, 0.1],
            ]
        )
    )
    assert not is_valid(log_probs.argmax(axis=1))
    assert viterbi(log_probs).tolist() == [1, 2, 0]


def test_decode_spans_reads_stray_i_as_a_start():
    assert decode_spans([0, 2, 2, 4, 0]) == [(1, 3, 0), (3, 4, 1)]


@settings(max_examples=300, deadline=None)
@given(score_matrices(max_len=30, max_types=4))
def test_viterbi_output_is_always_valid_iob2(scores):
    path = viterbi(scores)
    assert path.shape == (scores.shape[0],)
    assert is_valid(path.tolist())
    assert ((0 <= path) & (path < scores.shape[1])).all()


@settings(max_examples=200, deadline=None)
@given(score_matrices(max_len=5, max_types=2))
def test_viterbi_matches_brute_force(scores):
    path = viterbi(scores)
    n = scores.shape[0]
    found = scores[numpy.arange(n), path].sum()
    # Several optimal paths may tie, so compare the score the path achieves.
    assert found == pytest.approx(brute_force_best(scores), abs=1e-9)


@pytest.mark.parametrize("bad", [numpy.nan, -numpy.inf, numpy.inf])
def test_non_finite_scores_still_give_a_valid_path(bad):
    rng = numpy.random.default_rng(0)
    scores = numpy.log(rng.dirichlet(numpy.ones(5), size=12))
    scores[rng.random(scores.shape) < 0.4] = bad
    assert is_valid(viterbi(scores).tolist())


def test_empty_doc_and_no_types():
    assert viterbi(numpy.zeros((0, 3))).tolist() == []
    assert viterbi(numpy.zeros((4, 1))).tolist() == [0, 0, 0, 0]


def brute_force_best_allowed(scores, allowed):
    """The best total score over the valid sequences that use only allowed classes."""
    n, width = scores.shape
    best = -numpy.inf
    for seq in itertools.product(range(width), repeat=n):
        if is_valid(seq) and all(allowed[t, c] for t, c in enumerate(seq)):
            best = max(best, scores[numpy.arange(n), list(seq)].sum())
    return best


@settings(max_examples=200, deadline=None)
@given(score_matrices(max_len=5, max_types=2), st.data())
def test_viterbi_with_fixed_outside_tokens_matches_brute_force(scores, data):
    # As the bio_tagger constrains it around preset entities: some tokens may only be O.
    n, width = scores.shape
    fixed = numpy.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    allowed = numpy.ones((n, width), dtype=bool)
    allowed[fixed, 1:] = False
    path = viterbi(scores, allowed)
    assert is_valid(path.tolist())
    assert (path[fixed] == 0).all()
    found = scores[numpy.arange(n), path].sum()
    assert found == pytest.approx(brute_force_best_allowed(scores, allowed), abs=1e-9)


def test_viterbi_constraint_beats_any_score_and_cuts_a_span():
    # A confident entity over tokens 0-3; token 2 is fixed to O, so the span cannot run
    # through it: it ends at 1 and token 3 (I- favoured) must start a new one or be O.
    probs = numpy.full((4, 3), 0.01)
    probs[0, 1] = probs[1, 2] = probs[2, 2] = probs[3, 2] = 0.98
    allowed = numpy.ones((4, 3), dtype=bool)
    allowed[2, 1:] = False
    path = viterbi(numpy.log(probs), allowed)
    assert path.tolist()[:3] == [1, 2, 0]
    assert path[3] in (0, 1)
    assert viterbi(numpy.log(probs)).tolist() == [1, 2, 2, 2]
    with pytest.raises(ValueError, match="allowed has shape"):
        viterbi(numpy.log(probs), allowed[:2])
