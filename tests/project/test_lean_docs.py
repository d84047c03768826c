"""Pipelines of the shipped configs keep no decoder states on their Docs (doc_cleaner), so a
DocBin with user data stays under 1 KB a short sentence; the states can be kept on request.
Their heads refuse to run without the transformer (E101)."""

from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import load_config, load_model_from_config

from tests.tiny import save_tiny_decoder, train_examples

CONFIG = Path(__file__).parents[2] / "configs" / "default.cfg"
# 50 different short sentences (DocBin compresses: repeats would hide the states' size).
SENTENCES = [
    f"{name} moved to {city} in {1950 + i} and works for {org} ."
    for i, (name, city, org) in enumerate(
        (n, c, o)
        for n in ("John", "Mary", "Ann", "Tom", "Lee")
        for c in ("Paris", "Rome")
        for o in ("Google", "Acme Corp", "the BBC", "Siemens", "NASA")
    )
]
MAX_BYTES_PER_SENTENCE = 1024


@pytest.fixture(scope="module")
def nlp(tmp_path_factory, byte_level_tokenizer):
    from thinc.api import Adam

    base = save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)
    config = load_config(
        CONFIG,
        overrides={
            "components.transformer.model.name": base,
            "training.max_steps": 2,
            "components.transformer.model.mixed_precision": False,
        },
        interpolate=True,
    )
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=Adam(0.001))
    return nlp


def docbin_bytes_per_sentence(docs):
    docbin = DocBin(store_user_data=True)
    for doc in docs:
        docbin.add(doc)
    return len(docbin.to_bytes()) / len(SENTENCES)


def test_docs_leave_without_the_decoder_states(nlp):
    docs = list(nlp.pipe(SENTENCES))
    assert all(doc._.trf_data is None for doc in docs)
    # The heads still annotated them.
    assert all(doc.has_annotation("TAG") for doc in docs)
    assert docbin_bytes_per_sentence(docs) <= MAX_BYTES_PER_SENTENCE


def test_states_are_kept_on_request_and_are_what_made_docs_big(nlp):
    docs = list(nlp.pipe(SENTENCES, disable=["doc_cleaner"]))
    assert all(doc._.trf_data is not None and doc._.trf_data.model_output.last_hidden_state.size for doc in docs)
    assert docbin_bytes_per_sentence(docs) > 2 * MAX_BYTES_PER_SENTENCE
    with nlp.select_pipes(disable=["doc_cleaner"]):
        assert nlp(SENTENCES[0])._.trf_data is not None


def test_saved_pipeline_can_be_loaded_without_the_cleaner(nlp, tmp_path):
    import spacy

    nlp.to_disk(tmp_path / "nlp")
    kept = spacy.load(tmp_path / "nlp", exclude=["doc_cleaner"])
    assert "doc_cleaner" not in kept.pipe_names
    assert kept(SENTENCES[0])._.trf_data is not None
    assert spacy.load(tmp_path / "nlp")(SENTENCES[0])._.trf_data is None


def test_evaluation_reads_the_heads_before_the_cleaner(nlp):
    examples = [Example(nlp.make_doc(eg.reference.text), eg.reference) for eg in train_examples(nlp)]
    scores = nlp.evaluate(examples)
    assert scores["tag_acc"] is not None and scores["ents_f"] is not None


@pytest.mark.parametrize("head", ["tagger", "ner"])
def test_heads_without_the_transformer_fail_naming_it(nlp, head):
    # The shipped configs' listeners (spaCy's tagger and the bio_tagger alike).
    with nlp.select_pipes(enable=[head]):
        with pytest.raises(ValueError, match="E101.*transformer component did not run"):
            nlp(SENTENCES[0])
