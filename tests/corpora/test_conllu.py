from pathlib import Path

import pytest

from spacy_cmllm.corpora import CorpusError, read_blocks, read_conllu
from tests.corpora.samples import EWT_ASSET


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "in.conllu"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_conllu_words_tags_spacing_entities(tmp_path: Path) -> None:
    sentences = list(read_conllu(write(tmp_path, EWT_ASSET)))
    assert [s.sent_id for s in sentences] == ["doc-1-0001", "doc-1-0002", "doc-1-0003", "doc-2-0001"]
    assert [s.doc_id for s in sentences] == ["doc-1", "doc-1", "doc-1", "doc-2"]
    first = sentences[0]
    assert first.text == "I don't like New York."
    assert first.words == ["I", "do", "n't", "like", "New", "York", "."]
    assert first.tags == ["PRP", "VBP", "RB", "VB", "NNP", "NNP", "."]
    assert first.pos == ["PRON", "AUX", "PART", "VERB", "PROPN", "PROPN", "PUNCT"]
    assert first.spaces == [True, False, True, True, True, False, True]
    assert first.ner == ["O", "O", "O", "O", "B-LOC", "I-LOC", "O"]
    assert first.lines == list(range(4, 11))


def test_without_a_ner_key_everything_is_outside(tmp_path: Path) -> None:
    text = EWT_ASSET.replace("NER=B-ORG", "_")
    assert [s.ner for s in read_conllu(write(tmp_path, text), ner_key=None)][-1] == ["O", "O"]


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("NER=B-PER\n2\tmet", "NER=I-PER\n2\tmet", r"in.conllu:14: invalid IOB2 sequence: I-PER after O"),
        ("NER=I-LOC|", "NER=I-PER|", r"in.conllu:9: invalid IOB2 sequence: I-PER after B-LOC"),
        ("NER=B-ORG", "NER=X-ORG", r"in.conllu:26: invalid NER tag 'X-ORG'"),
        ("\tNER=B-PER\n2\tmet", "\t_\n2\tmet", r"in.conllu:14: no NER= tag"),
        ("\tNER=B-PER\n2\tmet", "\tNER=B-PER\tx\n2\tmet", r"in.conllu:14: expected 10 tab-separated columns, got 11"),
        ("1\tHi\thi\t", "1\tHi  hi\t", r"in.conllu:21: expected 10 tab-separated columns, got 9"),
        ("1\tHi\thi\t", "1\tHi  there\thi\t", r"in.conllu:21: two consecutive spaces in a column"),
    ],
)
def test_bad_annotation_is_located_to_the_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert EWT_ASSET.count(old) == 1
    with pytest.raises(CorpusError, match=message):
        list(read_conllu(write(tmp_path, EWT_ASSET.replace(old, new))))


def test_multiword_tokens_are_refused(tmp_path: Path) -> None:
    text = EWT_ASSET.replace("2\tdo\t", "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n2\tdo\t")
    with pytest.raises(CorpusError, match=r"in.conllu:5: ID '2-3': multiword tokens"):
        list(read_conllu(write(tmp_path, text)))


def test_read_blocks_keeps_columns_as_written(tmp_path: Path) -> None:
    text = "# newdoc id = d\n# sent_id = s1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No\n1\tdo\t_\t_\t_\t_\t0\troot\t0:root\t_\n\n\n"
    text += "# sent_id = s2\n1\tx\t_\t_\t_\tA=1|B=2\t0\troot\t_\tNER=O"  # no final newline
    blocks = list(read_blocks(write(tmp_path, text)))
    assert [b.comments for b in blocks] == [{"newdoc id": "d", "sent_id": "s1"}, {"sent_id": "s2"}]
    assert [b.doc_id for b in blocks] == ["d", "d"]
    assert blocks[0].rows[0] == ["1-2", "don't", "_", "_", "_", "_", "_", "_", "_", "SpaceAfter=No"]
    assert blocks[0].rows[1][6:9] == ["0", "root", "0:root"]
    assert blocks[1].rows[0][5] == "A=1|B=2"
    assert [b.lines for b in blocks] == [[3, 4], [8]]
    assert [b.line_no for b in blocks] == [1, 7]


def test_read_blocks_of_other_widths(tmp_path: Path) -> None:
    path = write(tmp_path, "# sent_id = a\n1\tAnna\tB-PER\t-\tann\n2\tsings\tO\t-\t-\n")
    (block,) = read_blocks(path, n_columns=None)
    assert block.rows == [["1", "Anna", "B-PER", "-", "ann"], ["2", "sings", "O", "-", "-"]]
    assert block.doc_id is None
    with pytest.raises(CorpusError, match=r"in.conllu:2: expected 10 tab-separated columns, got 5"):
        list(read_blocks(path))
