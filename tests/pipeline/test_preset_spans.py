"""Spans a doc already has when the bio_tagger runs: kept and predicted around (as spaCy's
ner does with preset entities), or replaced with overwrite = true; with entity_ruler before
and after the tagger, and in training."""

import pytest
import spacy
from spacy.tokens import Span, SpanGroup
from thinc.api import Adam, fix_random_seed

from tests.pipeline.test_bio_tagger import CHUNKS, TEXTS, TOK2VEC, chunk_examples, entity_examples, gold_ents

# TEXTS[0] = "John lives in New York and works for Google ."; gold: John PER, New York LOC, Google ORG.
NEW_YORK_GPE = {"label": "GPE", "pattern": "New York"}
# Overlaps the predicted LOC "New York" on one side only.
YORK_AND = {"label": "MISC", "pattern": [{"ORTH": "York"}, {"ORTH": "and"}]}


def ents(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def trained(steps=30, **config):
    """A blank pipeline with a tok2vec bio_tagger that has learnt TRAIN_DATA's entities."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bio_tagger", config={"model": {"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC}, **config}
    )
    examples = entity_examples(nlp)
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    assert [ents(doc) for doc in nlp.pipe(TEXTS)] == gold_ents()
    return nlp


@pytest.fixture(scope="module")
def keeping():
    return trained()


@pytest.fixture(scope="module")
def overwriting():
    return trained(overwrite=True)


def with_ruler(nlp, patterns, **config):
    """The same trained tagger behind or before a fresh entity_ruler (added after training:
    initialize would clear its patterns)."""
    ruler = nlp.add_pipe("entity_ruler", config=config)
    ruler.add_patterns(patterns)
    return nlp, ruler


@pytest.fixture
def keeping_with_ruler_before(keeping):
    ruler = keeping.add_pipe("entity_ruler", before="bio_tagger")
    yield keeping, ruler
    keeping.remove_pipe("entity_ruler")


def test_ruler_entity_before_the_tagger_survives(keeping_with_ruler_before):
    nlp, ruler = keeping_with_ruler_before
    ruler.add_patterns([NEW_YORK_GPE])
    doc = nlp(TEXTS[0])
    # The ruler's label is unknown to the tagger, and still kept; the rest is predicted.
    assert ents(doc) == [(0, 1, "PER"), (3, 5, "GPE"), (8, 9, "ORG")]
    assert [t.ent_iob_ for t in doc] == ["B", "O", "O", "B", "I", "O", "O", "O", "B", "O"]


def test_predictions_avoid_a_preset_entity_they_would_overlap(keeping_with_ruler_before):
    nlp, ruler = keeping_with_ruler_before
    ruler.add_patterns([YORK_AND])
    doc = nlp(TEXTS[0])
    found = ents(doc)
    assert (4, 6, "MISC") in found
    # "New" alone may or may not still be read as a location; nothing may touch "York and".
    for start, end, label in found:
        if label != "MISC":
            assert end <= 4 or start >= 6, found
    assert (0, 1, "PER") in found and (8, 9, "ORG") in found


def test_kb_id_of_a_preset_entity_is_kept(keeping):
    doc = keeping.make_doc(TEXTS[0])
    doc.ents = [Span(doc, 3, 5, label="GPE", kb_id="Q60")]
    doc = keeping.get_pipe("bio_tagger")(doc)
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents if e.label_ == "GPE"] == [("New York", "GPE", "Q60")]


def test_blocked_tokens_stay_blocked_and_outside_any_entity(keeping):
    # doc.set_ents(blocked=...) is how a user tells spaCy's ner "never an entity here".
    doc = keeping.make_doc(TEXTS[0])
    doc.set_ents([], blocked=[doc[0:1]], default="missing")
    doc = keeping.get_pipe("bio_tagger")(doc)
    assert ents(doc) == [(3, 5, "LOC"), (8, 9, "ORG")]
    assert doc[0].ent_iob == 3 and doc[0].ent_type == 0  # still blocked
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)


def test_explicit_outside_is_no_constraint(keeping):
    # entity_ruler sets O on every token it does not match; that must not silence the tagger.
    doc = keeping.make_doc(TEXTS[0])
    doc.set_ents([], default="outside")
    doc = keeping.get_pipe("bio_tagger")(doc)
    assert ents(doc) == gold_ents()[0]


def test_overwrite_replaces_the_ruler_entity(overwriting):
    ruler = overwriting.add_pipe("entity_ruler", before="bio_tagger")
    ruler.add_patterns([NEW_YORK_GPE, YORK_AND])
    try:
        assert [ents(doc) for doc in overwriting.pipe(TEXTS)] == gold_ents()
    finally:
        overwriting.remove_pipe("entity_ruler")


@pytest.mark.parametrize("ruler_overwrites", [False, True])
def test_ruler_after_the_tagger_follows_its_own_overwrite_ents(keeping, ruler_overwrites):
    ruler = keeping.add_pipe("entity_ruler", after="bio_tagger", config={"overwrite_ents": ruler_overwrites})
    ruler.add_patterns([NEW_YORK_GPE])
    try:
        found = ents(keeping(TEXTS[0]))
    finally:
        keeping.remove_pipe("entity_ruler")
    expected = "GPE" if ruler_overwrites else "LOC"
    assert found == [(0, 1, "PER"), (3, 5, expected), (8, 9, "ORG")]


def test_a_second_pass_changes_nothing(keeping):
    doc = keeping(TEXTS[0])
    before = ents(doc)
    assert ents(keeping.get_pipe("bio_tagger")(doc)) == before


def test_training_ignores_presets_and_prediction_keeps_them():
    """Training on examples whose predicted docs carry entities (an entity_ruler among
    [training] annotating_components) learns from the gold exactly as without them; the
    presets matter only when predicting."""

    def run(with_ruler):
        nlp = spacy.blank("en")
        if with_ruler:
            nlp.add_pipe("entity_ruler")
        nlp.add_pipe("bio_tagger", config={"model": {"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC}})
        examples = entity_examples(nlp)
        fix_random_seed(0)
        nlp.initialize(lambda: examples)
        if with_ruler:
            nlp.get_pipe("entity_ruler").add_patterns([YORK_AND])
        tagger = nlp.get_pipe("bio_tagger")
        seen = []
        update = tagger.update

        def spy(batch, **kwargs):
            batch = list(batch)
            seen.append([e.label_ for eg in batch for e in eg.predicted.ents])
            return update(batch, **kwargs)

        tagger.update = spy
        optimizer = Adam(0.01)
        annotates = ["entity_ruler"] if with_ruler else []
        losses = [nlp.update(examples, sgd=optimizer, annotates=annotates)["bio_tagger"] for _ in range(30)]
        del tagger.update
        return nlp, seen, losses

    plain, _, plain_losses = run(False)
    ruled, seen, ruled_losses = run(True)
    # The ruler did annotate the docs the tagger was updated on...
    assert all("MISC" in labels for labels in seen)
    # ...and the loss came from the gold alone.
    assert ruled_losses == pytest.approx(plain_losses, rel=1e-6)
    assert ruled_losses[-1] < 0.05 * ruled_losses[0]
    # Evaluation runs the ruler first: its entity is kept, scored against the gold LOC.
    scores = ruled.evaluate(entity_examples(ruled))
    assert scores["ents_per_type"]["ORG"]["f"] == 1.0 and scores["ents_per_type"]["PER"]["f"] == 1.0
    assert scores["ents_f"] < 1.0


# -- doc.spans[spans_key] ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chunker():
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bio_tagger",
        config={"model": {"@architectures": "spacy-cmllm.BIOTagger.v1", "tok2vec": TOK2VEC}, "spans_key": "chunks"},
    )
    examples = chunk_examples(nlp)
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01)
    for _ in range(40):
        nlp.update(examples, sgd=optimizer)
    return nlp


def spans(doc, key="chunks"):
    return [(s.start, s.end, s.label_) for s in doc.spans[key]]


def test_spans_already_in_the_group_are_kept(chunker):
    doc = chunker.make_doc(TEXTS[0])
    doc.spans["chunks"] = SpanGroup(doc, name="chunks", attrs={"source": "rules"}, spans=[Span(doc, 3, 6, label="XP")])
    doc = chunker.get_pipe("bio_tagger")(doc)
    found = spans(doc)
    assert (3, 6, "XP") in found
    assert doc.spans["chunks"].attrs == {"source": "rules"}
    for start, end, label in found:
        if label != "XP":
            assert end <= 3 or start >= 6, found
    # Elsewhere the chunks are the ones predicted without the preset span.
    assert [c for c in CHUNKS[0] if c[1] <= 3 or c[0] >= 6] == [c for c in found if c[2] != "XP"]
    assert found == sorted(found)


def test_spans_overwrite_and_other_keys(chunker):
    tagger = chunker.get_pipe("bio_tagger")
    doc = chunker.make_doc(TEXTS[0])
    doc.spans["other"] = [Span(doc, 0, 2, label="Z")]
    doc = tagger(doc)
    assert spans(doc) == CHUNKS[0] and spans(doc, "other") == [(0, 2, "Z")]
    tagger.overwrite = True
    try:
        doc = chunker.make_doc(TEXTS[0])
        doc.spans["chunks"] = [Span(doc, 3, 6, label="XP")]
        assert spans(tagger(doc)) == CHUNKS[0]
    finally:
        tagger.overwrite = False


def test_overwrite_must_be_a_bool():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="bio_tagger -> overwrite"):
        nlp.add_pipe("bio_tagger", config={"overwrite": "sometimes"})


def test_overlapping_preset_spans_are_kept_and_avoided(chunker):
    doc = chunker.make_doc(TEXTS[0])
    doc.spans["chunks"] = [Span(doc, 3, 5, label="XP"), Span(doc, 4, 7, label="YP")]
    found = spans(chunker.get_pipe("bio_tagger")(doc))
    assert (3, 5, "XP") in found and (4, 7, "YP") in found
    assert all(end <= 3 or start >= 7 for start, end, label in found if label not in ("XP", "YP")), found


def test_empty_and_whitespace_docs_beside_preset_ones(keeping):
    docs = [keeping.make_doc(""), keeping.make_doc(TEXTS[0]), keeping.make_doc("  ")]
    docs[1].ents = [Span(docs[1], 3, 5, label="GPE")]
    out = list(keeping.get_pipe("bio_tagger").pipe(docs))
    assert ents(out[0]) == [] and (3, 5, "GPE") in ents(out[1])
