"""Variants of one pipeline: each with its own decoder settings, all around one decoder."""

import numpy
import pytest
from spacy.tokens import Doc

from benchmarks.pipelines import pipeline_variant
from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import TRAIN_DATA, build_pipeline, train


@pytest.fixture(scope="module")
def nlp(tiny_dir):
    # v1, which has no config parameter for packing or int8: the variants set them all the same.
    nlp = build_pipeline(tiny_dir)
    train(nlp, steps=2)
    return nlp


def predictions(nlp):
    docs = list(nlp.pipe([Doc(nlp.vocab, words=words) for words, _, _ in TRAIN_DATA]))
    return (
        [[t.tag_ for t in doc] for doc in docs],
        [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs],
        [doc._.trf_data.model_output.last_hidden_state for doc in docs],
    )


def settings(nlp):
    return {key: nlp.get_pipe("transformer").model.attrs[key] for key in ("pack", "int8", "mixed_precision")}


def test_a_variant_runs_the_same_decoder_with_its_own_settings(nlp):
    before = settings(nlp)
    same, packed = pipeline_variant(nlp), pipeline_variant(nlp, pack=True, mixed_precision=False)
    decoder = get_backbone(nlp.get_pipe("transformer").model)
    assert (
        get_backbone(same.get_pipe("transformer").model)
        is decoder
        is get_backbone(packed.get_pipe("transformer").model)
    )
    assert settings(packed) == {**before, "pack": True, "mixed_precision": False} and settings(nlp) == before
    tags, ents, vectors = predictions(nlp)
    same_tags, same_ents, same_vectors = predictions(same)
    assert (same_tags, same_ents) == (tags, ents)
    for a, b in zip(vectors, same_vectors):
        numpy.testing.assert_array_equal(a, b)
    # Its unmasking is the shared decoder's, not a copy.
    assert bidirectional_layers(get_backbone(packed.get_pipe("transformer").model).decoder) == [
        False,
        False,
        True,
        True,
    ]


def test_a_setting_the_model_does_not_have_is_refused(nlp):
    with pytest.raises(ValueError, match="no settings \\['packing'\\]"):
        pipeline_variant(nlp, packing=True)
