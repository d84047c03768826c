"""IOB2 classes and their decoding: the label side of the ``bio_tagger`` component.

For entity types L_0 .. L_{K-1} the classes are laid out as
``O, B-L_0, I-L_0, B-L_1, I-L_1, ...``: class 0 is O, class 1 + 2k is B-L_k and
class 2 + 2k is I-L_k. Decoding never yields an invalid sequence: I-X may only follow
B-X or I-X of the same type, and no sequence starts with I-X.
"""

from collections.abc import Iterable, Sequence

import numpy

OUTSIDE = 0
_LARGE = 1e30
_FORBIDDEN = 1e200


def class_names(labels: Sequence[str]) -> list[str]:
    """The IOB2 class names for entity types, in class order.

    labels (Sequence[str]): the entity types, in label order.
    RETURNS (List[str]): ["O", "B-<label 0>", "I-<label 0>", "B-<label 1>", ...].
    """
    names = ["O"]
    for label in labels:
        names += [f"B-{label}", f"I-{label}"]
    return names


def n_classes(n_labels: int) -> int:
    """The number of IOB2 classes for n_labels entity types."""
    return 1 + 2 * n_labels


def encode_spans(length: int, spans: Sequence[tuple[int, int, int]]) -> numpy.ndarray:
    """IOB2 class ids for non-overlapping (start, end, label index) token spans.

    length (int): the number of tokens.
    spans (Sequence[Tuple[int, int, int]]): end-exclusive token spans with the index of
        their entity type.
    RETURNS (numpy.ndarray): int64 class ids, OUTSIDE where no span is.
    """
    ids = numpy.full(length, OUTSIDE, dtype=numpy.int64)
    for start, end, label in spans:
        ids[start:end] = 2 + 2 * label
        ids[start] = 1 + 2 * label
    return ids


def decode_spans(ids: Iterable[int]) -> list[tuple[int, int, int]]:
    """The (start, end, label index) spans of an IOB2 class-id sequence.

    ids (Iterable[int]): class ids, e.g. from viterbi(). An I-X that continues nothing
        (never produced by viterbi) opens a span, as seqeval's lenient mode reads it.
    RETURNS (List[Tuple[int, int, int]]): end-exclusive token spans, in order.
    """
    spans: list[list[int]] = []
    for i, c in enumerate(ids):
        c = int(c)
        if c == OUTSIDE:
            continue
        label = spans_label(c)
        continues = c % 2 == 0 and spans and spans[-1][1] == i and spans[-1][2] == label
        if continues:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1, label])
    return [(start, end, label) for start, end, label in spans]


def spans_label(class_id: int) -> int:
    """The entity-type index of a B- or I- class id."""
    return (int(class_id) - 1) // 2


def is_valid(ids: Sequence[int]) -> bool:
    """Whether a class-id sequence is valid IOB2 (every I-X continues a B-X or I-X)."""
    previous = OUTSIDE
    for c in ids:
        if c != OUTSIDE and c % 2 == 0 and previous not in (c - 1, c):
            return False
        previous = c
    return True


def viterbi(log_probs: numpy.ndarray, allowed: numpy.ndarray | None = None) -> numpy.ndarray:
    """The highest-scoring valid IOB2 sequence under per-token log-probabilities.

    The transition constraints have a shape that avoids the full classes x classes table:
    O and B-X may follow anything, I-X only B-X or I-X. So each step is one max over all
    classes plus a pairwise max per type, O(n * classes) in all.

    log_probs (numpy.ndarray): (n_tokens, 1 + 2 * n_types) log-probabilities (any
        per-token scores whose sum along a sequence is to be maximised).
    allowed (Optional[numpy.ndarray]): (n_tokens, 1 + 2 * n_types) booleans, the classes
        each token may take (e.g. only O on the tokens of a preset entity); None = all.
        O must be allowed wherever the allowed I- classes could not be reached.
    RETURNS (numpy.ndarray): int64 class ids of length n_tokens; ties go to the lower id.
    """
    # Non-finite scores become large finite ones: inf - inf would make NaNs, and a NaN
    # wins argmax, which could then pick a forbidden transition.
    scores = numpy.nan_to_num(numpy.asarray(log_probs, dtype=numpy.float64), nan=-_LARGE, neginf=-_LARGE, posinf=_LARGE)
    n, width = scores.shape
    if width % 2 != 1:
        raise ValueError(f"expected 1 + 2 * n_types columns, got {width}")
    if allowed is not None:
        allowed = numpy.asarray(allowed, dtype=bool)
        if allowed.shape != scores.shape:
            raise ValueError(f"allowed has shape {allowed.shape}, expected {scores.shape}")
        # Far below any reachable score (each is >= -_LARGE per token), yet finite, so
        # that a forbidden class never wins and no NaN appears.
        scores = numpy.where(allowed, scores, -_FORBIDDEN)
    if n == 0:
        return numpy.zeros(0, dtype=numpy.int64)
    n_types = width // 2
    types = numpy.arange(n_types)
    b_cols = 1 + 2 * types
    i_cols = 2 + 2 * types
    # back[t, c]: the class at t - 1 on the best path that has class c at t.
    back = numpy.zeros((n, width), dtype=numpy.int64)
    best = scores[0].copy()
    best[i_cols] = -numpy.inf  # no sequence starts inside a span
    for t in range(1, n):
        prev_best = int(numpy.argmax(best))
        # I-X continues either the B-X or the I-X before it; ties go to B-X (lower id).
        from_i = best[i_cols] > best[b_cols]
        cont = numpy.where(from_i, i_cols, b_cols)
        step = numpy.empty(width)
        step[0] = best[prev_best]
        step[b_cols] = best[prev_best]
        step[i_cols] = best[cont]
        back[t, 0] = prev_best
        back[t, b_cols] = prev_best
        back[t, i_cols] = cont
        best = step + scores[t]
    path = numpy.empty(n, dtype=numpy.int64)
    path[-1] = int(numpy.argmax(best))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
