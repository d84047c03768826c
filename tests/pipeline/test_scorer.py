import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_cmllm.pipeline.scorer import iob2_tags, score_entities


def example(nlp, words, gold, pred):
    predicted = spacy.tokens.Doc(nlp.vocab, words=words)
    predicted.ents = [Span(predicted, s, e, label=l) for s, e, l in pred]
    reference = spacy.tokens.Doc(nlp.vocab, words=words)
    reference.ents = [Span(reference, s, e, label=l) for s, e, l in gold]
    return Example(predicted, reference)


def test_iob2_tags():
    nlp = spacy.blank("en")
    doc = spacy.tokens.Doc(nlp.vocab, words="a b c d".split())
    doc.ents = [Span(doc, 1, 3, label="ORG")]
    assert iob2_tags(4, doc.ents) == ["O", "B-ORG", "I-ORG", "O"]


def test_strict_micro_scores():
    nlp = spacy.blank("en")
    words = "John Smith visited New York City today".split()
    examples = [
        # one exact match (PER), one boundary error (LOC): strict counts it wrong
        example(nlp, words, gold=[(0, 2, "PER"), (3, 6, "LOC")], pred=[(0, 2, "PER"), (3, 5, "LOC")]),
        example(nlp, words, gold=[(3, 6, "LOC")], pred=[(3, 6, "LOC"), (6, 7, "ORG")]),
    ]
    scores = score_entities(examples)
    # tp=2, predicted=4, gold=3
    assert scores["ents_seqeval_p"] == pytest.approx(2 / 4)
    assert scores["ents_seqeval_r"] == pytest.approx(2 / 3)
    assert scores["ents_seqeval_f"] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert scores["ents_f"] == pytest.approx(scores["ents_seqeval_f"])  # spaCy's own, alongside


def test_no_entities_anywhere():
    nlp = spacy.blank("en")
    scores = score_entities([example(nlp, ["a", "b"], gold=[], pred=[])])
    assert scores["ents_seqeval_f"] is None
