"""UPOS from the predicted tag: rules learnt from a corpus, applied by spaCy's attribute_ruler."""

import warnings

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from spacy_cmllm.pipeline.pos_rules import learn_pos_rules, pos_patterns_from_corpus, rules_to_patterns

# (word, PTB tag, UPOS): "that" is mostly SCONJ as IN but PRON as DT; "is" is AUX though VBZ
# is mostly VERB; "before" is ADP as IN once and SCONJ once (a tie).
SENTENCES = [
    [
        ("She", "PRP", "PRON"),
        ("says", "VBZ", "VERB"),
        ("that", "IN", "SCONJ"),
        ("it", "PRP", "PRON"),
        ("is", "VBZ", "AUX"),
        ("late", "JJ", "ADJ"),
    ],
    [
        ("He", "PRP", "PRON"),
        ("knows", "VBZ", "VERB"),
        ("that", "DT", "PRON"),
        ("in", "IN", "ADP"),
        ("May", "NNP", "PROPN"),
    ],
    [
        ("That", "IN", "SCONJ"),
        ("is", "VBZ", "AUX"),
        ("before", "IN", "ADP"),
        ("noon", "NN", "NOUN"),
        ("and", "CC", "CCONJ"),
    ],
    [
        ("It", "PRP", "PRON"),
        ("runs", "VBZ", "VERB"),
        ("before", "IN", "SCONJ"),
        ("it", "PRP", "PRON"),
        ("walks", "VBZ", "VERB"),
    ],
    [("Wait", "VB", "VERB"), ("in", "IN", "ADP"), ("the", "DT", "DET"), ("hall", "NN", "NOUN")],
]


def corpus_docs(vocab=None, with_pos=True):
    vocab = vocab or spacy.blank("en").vocab
    return [
        Doc(
            vocab, words=[w for w, _, _ in s], tags=[t for _, t, _ in s], pos=[p for _, _, p in s] if with_pos else None
        )
        for s in SENTENCES
    ]


def test_tag_majority_and_word_exceptions():
    tag_map, exceptions = learn_pos_rules(corpus_docs())
    assert tag_map == {
        "CC": "CCONJ",
        "DT": "DET",
        "IN": "ADP",
        "JJ": "ADJ",
        "NN": "NOUN",
        "NNP": "PROPN",
        "PRP": "PRON",
        "VB": "VERB",
        "VBZ": "VERB",
    }
    # Lower-cased words; "before" ties ADP/SCONJ and goes to ADP, its tag's own UPOS.
    assert exceptions == {("IN", "that"): "SCONJ", ("VBZ", "is"): "AUX", ("DT", "that"): "PRON"}
    assert learn_pos_rules(corpus_docs(), min_count=2)[1] == {("IN", "that"): "SCONJ", ("VBZ", "is"): "AUX"}


def test_rules_do_not_depend_on_the_order_of_the_data():
    docs = corpus_docs()
    assert learn_pos_rules(docs) == learn_pos_rules(list(reversed(docs)))


def test_attribute_ruler_applies_exceptions_over_tag_rules():
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("attribute_ruler")
    ruler.add_patterns(rules_to_patterns(learn_pos_rules(corpus_docs(nlp.vocab))))
    doc = Doc(nlp.vocab, words=["That", "is", "that", "in", "Rome", "?"], tags=["IN", "VBZ", "DT", "IN", "NNP", "."])
    doc = ruler(doc)
    # "?" has a tag the corpus never had: no rule, POS stays unset.
    assert [t.pos_ for t in doc] == ["SCONJ", "AUX", "PRON", "ADP", "PROPN", ""]


def test_registered_reader_learns_from_a_file_or_a_directory(tmp_path):
    DocBin(docs=corpus_docs()[:3]).to_disk(tmp_path / "a.spacy")
    (tmp_path / "more").mkdir()
    DocBin(docs=corpus_docs()[3:]).to_disk(tmp_path / "more" / "b.spacy")
    make = spacy.registry.misc.get("spacy-cmllm.pos_patterns_from_corpus.v1")
    everything = rules_to_patterns(learn_pos_rules(corpus_docs()))
    assert make(path=str(tmp_path)) == everything
    assert make(path=str(tmp_path / "a.spacy")) == rules_to_patterns(learn_pos_rules(corpus_docs()[:3]))
    with pytest.raises(ValueError, match="E040.*min_count"):
        make(path=str(tmp_path), min_count=0)


def test_no_corpus_or_no_pos_gives_no_rules_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="W110.*paths.train is null"):
        assert pos_patterns_from_corpus(None) == []
    DocBin(docs=corpus_docs(with_pos=False)).to_disk(tmp_path / "tags_only.spacy")
    with pytest.warns(UserWarning, match="W110.*tags_only.spacy"):
        assert pos_patterns_from_corpus(tmp_path / "tags_only.spacy") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DocBin(docs=corpus_docs()).to_disk(tmp_path / "full.spacy")
        assert pos_patterns_from_corpus(tmp_path / "full.spacy")
