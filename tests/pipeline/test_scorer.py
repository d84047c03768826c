import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_cmllm.pipeline.scorer import iob2_tags, score_bio, score_entities, score_spans


def example(nlp, words, gold, pred):
    predicted = spacy.tokens.Doc(nlp.vocab, words=words)
    predicted.ents = [Span(predicted, s, e, label=label) for s, e, label in pred]
    reference = spacy.tokens.Doc(nlp.vocab, words=words)
    reference.ents = [Span(reference, s, e, label=label) for s, e, label in gold]
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


def span_example(nlp, words, gold, pred, key="chunks"):
    predicted = spacy.tokens.Doc(nlp.vocab, words=words)
    reference = spacy.tokens.Doc(nlp.vocab, words=words)
    if pred is not None:
        predicted.spans[key] = [Span(predicted, s, e, label=label) for s, e, label in pred]
    if gold is not None:
        reference.spans[key] = [Span(reference, s, e, label=label) for s, e, label in gold]
    return Example(predicted, reference)


def test_span_scores_match_entity_scores_on_the_same_spans():
    nlp = spacy.blank("en")
    words = "John Smith visited New York City today".split()
    cases = [
        ([(0, 2, "PER"), (3, 6, "LOC")], [(0, 2, "PER"), (3, 5, "LOC")]),
        ([(3, 6, "LOC")], [(3, 6, "LOC"), (6, 7, "ORG")]),
    ]
    ents = score_entities([example(nlp, words, gold=g, pred=p) for g, p in cases])
    spans = score_spans([span_example(nlp, words, gold=g, pred=p) for g, p in cases], spans_key="chunks")
    for metric in ("p", "r", "f"):
        assert spans[f"spans_chunks_seqeval_{metric}"] == pytest.approx(ents[f"ents_seqeval_{metric}"])
        assert spans[f"spans_chunks_{metric}"] == pytest.approx(ents[f"ents_{metric}"])
    assert spans["spans_chunks_seqeval_p"] == pytest.approx(2 / 4)
    assert set(spans["spans_chunks_per_type"]) == {"PER", "LOC", "ORG"}
    assert not any(key.startswith("ents") for key in spans)


def test_span_scores_skip_docs_without_the_key():
    nlp = spacy.blank("en")
    words = "a b c".split()
    annotated = span_example(nlp, words, gold=[(0, 1, "X")], pred=[(0, 1, "X")])
    # Predictions on a doc whose reference has no "chunks" group count neither way.
    unannotated = span_example(nlp, words, gold=None, pred=[(1, 2, "X")])
    scores = score_spans([annotated, unannotated], spans_key="chunks")
    assert scores["spans_chunks_seqeval_p"] == 1.0 and scores["spans_chunks_p"] == 1.0
    assert score_spans([unannotated], spans_key="chunks")["spans_chunks_seqeval_f"] is None


def test_bio_scorer_dispatches_on_spans_key():
    nlp = spacy.blank("en")
    words = "a b c".split()
    eg = example(nlp, words, gold=[(0, 1, "X")], pred=[(0, 1, "X")])
    assert score_bio([eg])["ents_seqeval_f"] == 1.0
    assert score_bio([eg], spans_key="chunks")["spans_chunks_seqeval_f"] is None  # no such group
    eg = span_example(nlp, words, gold=[(0, 1, "X")], pred=[(1, 2, "X")])
    scores = score_bio([eg], spans_key="chunks")
    assert scores["spans_chunks_seqeval_f"] == 0.0 and "ents_f" not in scores


def test_scorers_are_registered():
    assert spacy.registry.scorers.get("spacy-cmllm.seqeval_spans_scorer.v1")() is score_spans
    assert spacy.registry.scorers.get("spacy-cmllm.bio_scorer.v1")() is score_bio
