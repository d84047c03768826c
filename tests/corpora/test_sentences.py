import pytest
import spacy

from spacy_cmllm.corpora import Sentence, describe, group_sentences, sentences_to_doc, sentences_to_docs


def sentence(doc_id: str, n_words: int) -> Sentence:
    return Sentence(words=[f"w{i}" for i in range(n_words)], ner=["O"] * n_words, doc_id=doc_id)


SENTENCES = [sentence("a", 2), sentence("a", 2), sentence("a", 3), sentence("a", 9), sentence("a", 1), sentence("b", 1)]


def sizes(groups):
    return [[len(s) for s in group] for group in groups]


def test_groups_are_documents_by_default() -> None:
    assert sizes(group_sentences(SENTENCES)) == [[2, 2, 3, 9, 1], [1]]
    assert sizes(group_sentences(SENTENCES, max_words=0, max_sentences=None)) == [[2, 2, 3, 9, 1], [1]]


def test_groups_of_at_most_n_sentences() -> None:
    assert sizes(group_sentences(SENTENCES, max_sentences=2)) == [[2, 2], [3, 9], [1], [1]]


@pytest.mark.parametrize(
    "max_words, expected",
    [
        (4, [[2, 2], [3], [9], [1], [1]]),  # a sentence longer than the limit stays whole
        (7, [[2, 2, 3], [9], [1], [1]]),  # never across documents
        (1, [[2], [2], [3], [9], [1], [1]]),
        (100, [[2, 2, 3, 9, 1], [1]]),
    ],
)
def test_groups_of_at_most_w_words(max_words, expected) -> None:
    groups = list(group_sentences(SENTENCES, max_words=max_words))
    assert sizes(groups) == expected
    assert [s for g in groups for s in g] == SENTENCES


def test_sentences_to_doc_sets_what_the_sentences_have() -> None:
    vocab = spacy.blank("en").vocab
    first = Sentence(
        words=["Ann", "left", "."],
        ner=["B-PER", "O", "O"],
        tags=["NNP", "VBD", "."],
        pos=["PROPN", "VERB", "PUNCT"],
        spaces=[True, False, True],
    )
    second = Sentence(
        words=["New", "York"], ner=["B-LOC", "I-LOC"], tags=["NNP", "NNP"], pos=["PROPN", "PROPN"], spaces=[True, False]
    )
    doc = sentences_to_doc(vocab, [first, second])
    assert doc.text == "Ann left. New York"
    assert [s.text for s in doc.sents] == ["Ann left.", "New York"]
    assert [t.tag_ for t in doc] == ["NNP", "VBD", ".", "NNP", "NNP"]
    assert [t.pos_ for t in doc] == ["PROPN", "VERB", "PUNCT", "PROPN", "PROPN"]
    assert [(e.text, e.label_) for e in doc.ents] == [("Ann", "PER"), ("New York", "LOC")]
    assert describe([doc]) == "1 docs, 2 sentences, 5 tokens, 2 entities {'LOC': 1, 'PER': 1}"

    bare = sentences_to_doc(vocab, [Sentence(words=["a", "b"], ner=["O", "O"])])
    assert bare.text == "a b " and not bare.has_annotation("TAG") and not bare.has_annotation("POS")


def test_sentences_to_docs_makes_one_doc_per_group() -> None:
    docs = sentences_to_docs(spacy.blank("en").vocab, SENTENCES, max_words=4)
    assert [[len(s) for s in doc.sents] for doc in docs] == sizes(group_sentences(SENTENCES, max_words=4))
