"""A tiny decoder, a briefly trained tiny pipeline with a .spacy file of gold entities and
tags, and tiny CoNLL-2003 files, for the benchmarks' end-to-end tests."""

import pytest
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from tests.corpora.samples import CONLL03_IOB2_TRAIN
from tests.tiny import TRAIN_DATA, build_pipeline, save_tiny_decoder, train


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """A briefly trained tiny pipeline and a .spacy file of gold entities and tags."""
    path = tmp_path_factory.mktemp("trained")
    nlp = build_pipeline(tiny_dir, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3"})
    train(nlp, steps=5)
    nlp.to_disk(path / "model")
    docs = []
    for words, tags, biluo in TRAIN_DATA:
        doc = Doc(nlp.vocab, words=words, tags=tags)
        doc.ents = Example.from_dict(Doc(nlp.vocab, words=words), {"entities": biluo}).reference.ents
        docs.append(doc)
    DocBin(docs=docs).to_disk(path / "test.spacy")
    return path / "model", path / "test.spacy"


@pytest.fixture
def conll_dir(tmp_path):
    """A CoNLL-2003 directory in the converted layout (IOB2), a few documents per split."""
    directory = tmp_path / "conll"
    directory.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (directory / name).write_text("\n\n".join([CONLL03_IOB2_TRAIN] * 3) + "\n", encoding="utf-8")
    return directory
