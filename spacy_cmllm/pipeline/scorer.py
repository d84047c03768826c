"""Entity scores as the paper reports them: seqeval, strict mode, IOB2, micro average."""

from typing import Any, Dict, Iterable, List

from spacy.scorer import get_ner_prf
from spacy.training import Example


def iob2_tags(length: int, spans: Iterable[Any]) -> List[str]:
    """IOB2 tags for `length` tokens from (start, end, label) token spans."""
    tags = ["O"] * length
    for span in spans:
        tags[span.start] = f"B-{span.label_}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label_}"
    return tags


def score_entities(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
    """spaCy's ents_p/r/f/per_type and ents_seqeval_p/r/f (fractions, like spaCy's)."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    examples = list(examples)
    scores: Dict[str, Any] = dict(get_ner_prf(examples, **kwargs))
    gold: List[List[str]] = []
    pred: List[List[str]] = []
    for eg in examples:
        # Gold entities projected onto the predicted tokens, as spaCy's own scorer does.
        gold_spans = eg.get_aligned_spans_y2x(eg.reference.ents, allow_overlap=False)
        gold.append(iob2_tags(len(eg.predicted), gold_spans))
        pred.append(iob2_tags(len(eg.predicted), eg.predicted.ents))
    has_entities = any(t != "O" for seq in gold + pred for t in seq)
    for key, metric in (("p", precision_score), ("r", recall_score), ("f", f1_score)):
        scores[f"ents_seqeval_{key}"] = (
            float(metric(gold, pred, mode="strict", scheme=IOB2, average="micro", zero_division=0))
            if has_entities
            else None
        )
    return scores
