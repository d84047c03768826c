import pytest

from spacy_cmllm.corpora import CorpusError, check_iob2, entity_labels, iob1_to_iob2


def test_iob1_to_iob2_starts_every_entity_with_b() -> None:
    tags = ["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-ORG", "B-ORG"]
    assert iob1_to_iob2(tags) == ["B-PER", "I-PER", "B-PER", "B-LOC", "O", "B-ORG", "B-ORG"]
    check_iob2(iob1_to_iob2(tags))


@pytest.mark.parametrize("tags", [[], ["O"], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]])
def test_valid_iob2_passes(tags) -> None:
    check_iob2(tags)
    assert iob1_to_iob2(tags) == tags  # valid IOB2 is also read unchanged as IOB1


@pytest.mark.parametrize(
    "tags, message",
    [
        (["O", "I-PER"], r"f.txt:11: invalid IOB2 sequence: I-PER after O \(an I-PER entity must start with B-PER\)"),
        (["B-LOC", "I-PER"], r"f.txt:11: invalid IOB2 sequence: I-PER after B-LOC"),
        (["X-ORG"], r"f.txt:10: invalid NER tag 'X-ORG' \(expected O, B-X or I-X\)"),
        (["O", "B-"], r"f.txt:11: invalid NER tag 'B-'"),
        (["PER"], r"f.txt:10: invalid NER tag 'PER'"),
    ],
)
def test_invalid_iob2_is_located_never_repaired(tags, message) -> None:
    with pytest.raises(CorpusError, match=message) as info:
        check_iob2(tags, source="f.txt", lines=[10, 11])
    assert isinstance(info.value, ValueError)


def test_labels_restrict_the_entity_types() -> None:
    check_iob2(["B-PER", "I-PER"], labels=("PER", "LOC"))
    with pytest.raises(
        CorpusError, match=r"<tags>: invalid NER tag 'B-MISC' \(expected O, B-X or I-X with X in PER, LOC\)"
    ):
        check_iob2(["B-MISC"], labels=("PER", "LOC"))
    with pytest.raises(CorpusError, match=r"invalid NER tag 'I-MISC'"):
        iob1_to_iob2(["I-MISC"], labels=("PER", "LOC"))


def test_entity_labels_one_per_entity() -> None:
    assert entity_labels(["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]) == ["PER", "LOC", "LOC"]
