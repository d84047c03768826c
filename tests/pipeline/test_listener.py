"""spacy-cmllm.TransformerListener.v1: spacy-transformers' listener that fails with E101,
naming the transformer, where the stock one would tag from zero vectors."""

import numpy
import pytest
import spacy

from tests.tiny import LISTENER, save_tiny_decoder, train

CHECKED = {**LISTENER, "@architectures": "spacy-cmllm.TransformerListener.v1"}
TEXT = "John lives in New York and works for Google ."


def tagger_pipeline(base, listener):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-cmllm.CausalMaskLLM.v3",
                "name": str(base),
                "unmask": "0011",
                "lora": None,
            }
        },
    )
    nlp.add_pipe("tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": listener}})
    return nlp


@pytest.fixture(scope="module")
def base(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("base"), byte_level_tokenizer, n_layers=4)


@pytest.fixture(scope="module")
def trained(base):
    nlp = tagger_pipeline(base, CHECKED)
    train(nlp, steps=3)
    return nlp


def test_stock_listener_tags_silently_from_zeros(base):
    # What the checked listener exists for: the stock one says nothing.
    nlp = tagger_pipeline(base, LISTENER)
    train(nlp, steps=3)
    with nlp.select_pipes(enable=["tagger"]):
        doc = nlp(TEXT)
    assert len({t.tag_ for t in doc}) == 1


def test_listener_without_its_transformer_fails_naming_it(trained):
    with trained.select_pipes(enable=["tagger"]):
        with pytest.raises(ValueError, match=r"E101.*10 of 10|E101.*transformer component"):
            list(trained.pipe([TEXT] * 10))
    with pytest.raises(ValueError, match="E101"):
        list(trained.pipe([TEXT], disable=["transformer"]))


def test_listener_predicts_as_the_stock_one(trained):
    docs = list(trained.pipe([TEXT, "Mary visited Paris ."]))
    checked = trained.get_pipe("tagger").model.get_ref("tok2vec")
    ours = checked.predict(docs)
    stock = checked.layers[0].predict(docs)
    for a, b in zip(ours, stock):
        numpy.testing.assert_array_equal(a, b)
    # Empty Docs have no states and need none.
    assert len(trained("")) == 0


def test_pipeline_with_the_checked_listener_round_trips(trained, tmp_path):
    trained.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert [t.tag_ for t in loaded(TEXT)] == [t.tag_ for t in trained(TEXT)]
    assert loaded.get_pipe("transformer").listening_components == ["tagger"]
