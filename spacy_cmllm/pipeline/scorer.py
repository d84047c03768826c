"""Span scores as the paper reports them: seqeval, strict mode, IOB2, micro average.

Each scorer returns spaCy's own scores for the spans (``ents_*`` or ``spans_{key}_*``)
and, beside them, seqeval's under the same prefix (``ents_seqeval_p/r/f``,
``spans_{key}_seqeval_p/r/f``).
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example


def iob2_tags(length: int, spans: Iterable[Any]) -> list[str]:
    """IOB2 tags for `length` tokens from (start, end, label) token spans."""
    tags = ["O"] * length
    for span in spans:
        tags[span.start] = f"B-{span.label_}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label_}"
    return tags


def score_entities(examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
    """spaCy's ents_p/r/f/per_type and ents_seqeval_p/r/f (fractions, like spaCy's)."""
    examples = list(examples)
    scores: dict[str, Any] = dict(get_ner_prf(examples, **kwargs))
    scores.update(_seqeval_scores(examples, lambda doc: doc.ents, prefix="ents"))
    return scores


def score_spans(examples: Iterable[Example], *, spans_key: str, **kwargs: Any) -> dict[str, Any]:
    """spaCy's spans_{key}_p/r/f/per_type and spans_{key}_seqeval_p/r/f for doc.spans[key].

    examples (Iterable[Example]): the examples to score. Those whose reference lacks the
        key are not annotated for it and are skipped, as spaCy's spancat scorer does.
    spans_key (str): the key of the span group.
    kwargs: passed on to spaCy's Scorer.score_spans (e.g. allow_overlap, default True).
    RETURNS (Dict[str, Any]): the scores.
    """
    examples = [eg for eg in examples if spans_key in eg.reference.spans]
    attr = f"spans_{spans_key}"
    kwargs.setdefault("allow_overlap", True)
    kwargs.setdefault("getter", lambda doc, _attr: doc.spans.get(spans_key, []))
    kwargs.setdefault("has_annotation", lambda doc: spans_key in doc.spans)
    scores: dict[str, Any] = dict(Scorer.score_spans(examples, attr, **kwargs))
    scores.update(_seqeval_scores(examples, lambda doc: doc.spans.get(spans_key, []), prefix=attr))
    return scores


def score_bio(examples: Iterable[Example], *, spans_key: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """score_entities when spans_key is None, else score_spans for that key: what the
    ``bio_tagger`` component writes."""
    if spans_key is None:
        return score_entities(examples, **kwargs)
    return score_spans(examples, spans_key=spans_key, **kwargs)


def _seqeval_scores(
    examples: Sequence[Example], get_spans: Callable[[Doc], Iterable[Span]], *, prefix: str
) -> dict[str, float | None]:
    """{prefix}_seqeval_p/r/f over the spans get_spans reads from each doc; None when
    neither gold nor prediction has a span anywhere (seqeval would divide by zero)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold: list[list[str]] = []
    pred: list[list[str]] = []
    for eg in examples:
        # Gold spans projected onto the predicted tokens, as spaCy's own scorer does. Without
        # overlap, because one tag sequence cannot hold overlapping spans.
        gold_spans = eg.get_aligned_spans_y2x(get_spans(eg.reference), allow_overlap=False)
        gold.append(iob2_tags(len(eg.predicted), gold_spans))
        pred.append(iob2_tags(len(eg.predicted), get_spans(eg.predicted)))
    has_spans = any(t != "O" for seq in gold + pred for t in seq)
    scores: dict[str, float | None] = {}
    for key, metric in (("p", precision_score), ("r", recall_score), ("f", f1_score)):
        scores[f"{prefix}_seqeval_{key}"] = (
            float(metric(gold, pred, mode="strict", scheme=IOB2, average="micro", zero_division=0))
            if has_spans
            else None
        )
    return scores
