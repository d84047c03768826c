from collections import Counter
from pathlib import Path

import pytest
import spacy

from spacy_cmllm.corpora import CorpusError, conll03_files, read_conll, sentences_to_doc
from tests.corpora.samples import CONLL03_IOB1_TRAIN, CONLL03_IOB2_TRAIN

CONLL03 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "conll2003"


def write(tmp_path: Path, text: str, name: str = "f.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_documents_sentences_and_columns(tmp_path: Path) -> None:
    documents = read_conll(write(tmp_path, CONLL03_IOB2_TRAIN), scheme="iob2")
    assert [[s.words for s in d] for d in documents] == [
        [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]],
        [["Ann", "Bob", "Smith", "in", "New", "York", "Acme", "(", "foo"]],
    ]
    first = documents[0][0]
    assert first.tags == ["NNP", "VBZ", "JJ", "NN", "."]
    assert first.ner == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert first.lines == [3, 4, 5, 6, 7]
    assert first.spaces is None  # no spacing information: a space after every word
    assert [s.doc_id for d in documents for s in d] == ["0", "0", "1"]


def test_iob1_and_iob2_files_read_the_same(tmp_path: Path) -> None:
    iob1 = read_conll(write(tmp_path, CONLL03_IOB1_TRAIN, "a"), scheme="iob1")
    iob2 = read_conll(write(tmp_path, CONLL03_IOB2_TRAIN, "b"), scheme="iob2")
    assert [[(s.words, s.tags, s.ner) for s in d] for d in iob1] == [
        [(s.words, s.tags, s.ner) for s in d] for d in iob2
    ]


def test_a_file_without_docstart_is_one_document(tmp_path: Path) -> None:
    documents = read_conll(write(tmp_path, "A NN B-NP B-PER\n\nB NN B-NP O\n"))
    assert len(documents) == 1 and len(documents[0]) == 2


def test_bad_input_is_located(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"f.txt:2: expected 4 columns \(WORD POS CHUNK NER\), got 3"):
        read_conll(write(tmp_path, "A NN B-NP O\nB NN O\n"))
    bad = CONLL03_IOB2_TRAIN.replace("Blackburn NNP I-NP I-PER", "Blackburn NNP I-NP I-LOC")
    with pytest.raises(CorpusError, match=r"f.txt:10: invalid IOB2 sequence: I-LOC after B-PER"):
        read_conll(write(tmp_path, bad), scheme="iob2")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        read_conll(write(tmp_path, bad), scheme="bilou")


def test_to_doc(tmp_path: Path) -> None:
    document = read_conll(write(tmp_path, CONLL03_IOB1_TRAIN), scheme="iob1")[1]
    doc = sentences_to_doc(spacy.blank("en").vocab, document)
    assert doc.text == "Ann Bob Smith in New York Acme ( foo "
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Ann", "PER"),
        ("Bob Smith", "PER"),
        ("New York", "LOC"),
        ("Acme", "ORG"),
    ]
    assert [t.tag_ for t in doc][-2:] == ["(", "NN|SYM"]


@pytest.mark.skipif(
    not (CONLL03 / "iob1_original").is_dir(), reason="CoNLL-2003 is not bundled; ../shared/data/conll2003 is absent"
)
def test_the_real_dev_file_has_the_published_counts() -> None:
    """Published CoNLL-2003 dev (testa) statistics: 216 docs, 3,250 sentences, 51,362 tokens."""
    documents = read_conll(CONLL03 / "iob1_original" / "eng.testa", scheme="iob1")
    sentences = [s for d in documents for s in d]
    assert [len(documents), len(sentences), sum(len(s) for s in sentences)] == [216, 3250, 51362]
    labels = Counter(tag[2:] for s in sentences for tag in s.ner if tag.startswith("B-"))
    assert labels == {"LOC": 1837, "PER": 1842, "ORG": 1341, "MISC": 922}


def test_chunk_column_is_iob2_in_both_layouts(tmp_path: Path) -> None:
    iob1 = read_conll(write(tmp_path, CONLL03_IOB1_TRAIN, "a"), scheme="iob1")
    iob2 = read_conll(write(tmp_path, CONLL03_IOB2_TRAIN, "b"), scheme="iob2")
    assert [s.chunks for d in iob1 for s in d] == [s.chunks for d in iob2 for s in d]
    # IOB1: "I-NP I-NP" is one chunk; B- only between two adjacent chunks of one type.
    assert iob1[0][0].chunks == ["B-NP", "B-VP", "B-NP", "I-NP", "O"]
    doc = sentences_to_doc(spacy.blank("en").vocab, iob1[1])
    assert [(s.text, s.label_) for s in doc.spans["chunks"]] == [
        ("Ann Bob Smith", "NP"),
        ("in", "PP"),
        ("New York Acme", "NP"),
        ("foo", "NP"),
    ]
    assert [(e.text, e.label_) for e in doc.ents][1] == ("Bob Smith", "PER")  # NER is independent


def test_bad_chunk_tags_are_located(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"f.txt:2: invalid IOB2 sequence: I-VP after B-NP"):
        read_conll(write(tmp_path, "A NN B-NP O\nB NN I-VP O\n"), scheme="iob2")
    with pytest.raises(CorpusError, match=r"f.txt:1: invalid chunk tag 'NP'"):
        read_conll(write(tmp_path, "A NN NP O\n"), scheme="iob1")


def test_conll03_files_finds_the_one_layout_in_a_directory(tmp_path: Path) -> None:
    for name in ("train.txt", "valid.txt", "test.txt"):
        write(tmp_path, CONLL03_IOB2_TRAIN, name)
    scheme, files = conll03_files(tmp_path)
    assert scheme == "iob2" and files == {
        split: tmp_path / name for split, name in (("train", "train.txt"), ("dev", "valid.txt"), ("test", "test.txt"))
    }
    for name in ("eng.train", "eng.testa", "eng.testb"):
        write(tmp_path, CONLL03_IOB1_TRAIN, name)
    with pytest.raises(CorpusError, match="found both layouts"):
        conll03_files(tmp_path)
    with pytest.raises(CorpusError, match="found neither layout"):
        conll03_files(tmp_path / "nowhere")
