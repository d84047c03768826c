"""Scores from per-document counts, and 95 % bootstrap intervals over documents.

Micro F1 (seqeval, strict, IOB2) adds up over documents, since no span crosses a
document: F1 = 2 TP / (predicted + gold), with TP, predicted and gold summed over the
documents. So each scored run keeps, per test document, ``(tp, predicted, gold)`` as
seqeval's strict IOB2 entity extraction counts them (``(correct, tokens)`` for POS), and
a bootstrap resample of documents is a weighted sum of those rows: identical to running
seqeval on the resampled documents (tests check this), thousands of times faster.

Intervals: resample the test documents with replacement (the same resamples for every
run), recompute each run's micro score, average the runs of one configuration (its
seeds) and take the 2.5th and 97.5th percentiles. Paired differences use the same
resamples for both configurations, seed by seed.
"""

from collections.abc import Sequence
from typing import Any

import numpy

N_RESAMPLES = 2000
SEED = 0


def span_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    """(tp, predicted, gold) spans of one document's IOB2 tags, seqeval strict mode."""
    from seqeval.scheme import IOB2, Entities

    gold_set = set(Entities([list(gold)], IOB2).entities[0]) if gold else set()
    pred_set = set(Entities([list(pred)], IOB2).entities[0]) if pred else set()
    gold_set = {e.to_tuple()[1:] for e in gold_set}
    pred_set = {e.to_tuple()[1:] for e in pred_set}
    return len(gold_set & pred_set), len(pred_set), len(gold_set)


def f1_from_counts(counts: numpy.ndarray) -> numpy.ndarray:
    """Micro F1 from summed (tp, predicted, gold) in the last axis; 0 where nothing at all."""
    counts = numpy.asarray(counts, dtype=float)
    tp, denominator = counts[..., 0], counts[..., 1] + counts[..., 2]
    return numpy.divide(2 * tp, denominator, out=numpy.zeros_like(tp), where=denominator > 0)


def accuracy_from_counts(counts: numpy.ndarray) -> numpy.ndarray:
    """Accuracy from summed (correct, tokens) in the last axis."""
    counts = numpy.asarray(counts, dtype=float)
    return numpy.divide(counts[..., 0], counts[..., 1], out=numpy.zeros_like(counts[..., 0]), where=counts[..., 1] > 0)


def score(counts: numpy.ndarray, kind: str = "f1") -> numpy.ndarray:
    return f1_from_counts(counts) if kind == "f1" else accuracy_from_counts(counts)


def resample_weights(n_docs: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> numpy.ndarray:
    """(n_resamples, n_docs): how often each document is drawn in each resample."""
    rng = numpy.random.default_rng(seed)
    indices = rng.integers(0, n_docs, size=(n_resamples, n_docs))
    return weights_from_indices(indices, n_docs)


def weights_from_indices(indices: numpy.ndarray, n_docs: int) -> numpy.ndarray:
    indices = numpy.asarray(indices)
    weights = numpy.zeros((len(indices), n_docs))
    for row, drawn in enumerate(indices):
        numpy.add.at(weights[row], drawn, 1)
    return weights


def resampled_scores(runs: Sequence[numpy.ndarray], weights: numpy.ndarray, kind: str = "f1") -> numpy.ndarray:
    """(n_resamples, n_runs): each run's micro score on each resample of documents.
    runs: per run, an (n_docs, k) array of per-document counts, documents in one order."""
    return numpy.stack([score(weights @ numpy.asarray(run, dtype=float), kind) for run in runs], axis=1)


def interval(values: numpy.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap values."""
    tail = (1 - level) / 2 * 100
    return [float(numpy.percentile(values, tail)), float(numpy.percentile(values, 100 - tail))]


def mean_interval(
    runs: Sequence[numpy.ndarray], weights: numpy.ndarray, kind: str = "f1", level: float = 0.95
) -> list[float]:
    """Interval of the mean score over runs (seeds) of one configuration."""
    return interval(resampled_scores(runs, weights, kind).mean(axis=1), level)


def paired_difference(
    runs: dict[int, numpy.ndarray],
    references: dict[int, numpy.ndarray],
    weights: numpy.ndarray,
    kind: str = "f1",
    level: float = 0.95,
) -> dict[str, Any] | None:
    """Seed-by-seed differences (run - reference) on the full set, their mean, and the
    bootstrap interval of the mean difference (same resamples for both). None if no seed
    is shared."""
    seeds = sorted(set(runs) & set(references))
    if not seeds:
        return None
    full = [
        float(score(numpy.asarray(runs[s]).sum(axis=0), kind) - score(numpy.asarray(references[s]).sum(axis=0), kind))
        for s in seeds
    ]
    diffs = resampled_scores([runs[s] for s in seeds], weights, kind) - resampled_scores(
        [references[s] for s in seeds], weights, kind
    )
    return {
        "seeds": seeds,
        "per_seed": full,
        "mean": float(numpy.mean(full)),
        "wins": sum(d > 0 for d in full),
        "ci": interval(diffs.mean(axis=1), level),
    }
