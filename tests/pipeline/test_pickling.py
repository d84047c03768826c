"""A pipeline pickles (pickle.dumps(nlp), nlp.pipe(n_process=N) under spawn) and predicts the
same after pickle.loads, its unmasking hooks rebuilt with the layers they act on."""

import pickle

import numpy
import pytest
import torch

from spacy_cmllm.decoder.probe import bidirectional_layers
from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import build_pipeline, save_tiny_decoder, train

TEXTS = ["John lives in New York and works for Google .", "Mary visited Paris with Acme Corp yesterday ."]


@pytest.fixture(scope="module")
def nlp(tmp_path_factory, byte_level_tokenizer):
    base = save_tiny_decoder(tmp_path_factory.mktemp("base"), byte_level_tokenizer, n_layers=4)
    nlp = build_pipeline(base, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3", "unmask": "0101"})
    train(nlp, steps=3)
    return nlp


def predictions(nlp):
    return [
        (
            [t.tag_ for t in doc],
            [(e.start, e.end, e.label_) for e in doc.ents],
            doc._.trf_data.model_output.last_hidden_state.copy(),
        )
        for doc in nlp.pipe(TEXTS)
    ]


def test_pickled_pipeline_predicts_exactly_as_before(nlp):
    loaded = pickle.loads(pickle.dumps(nlp))
    for (tags_a, ents_a, hidden_a), (tags_b, ents_b, hidden_b) in zip(predictions(nlp), predictions(loaded)):
        assert tags_a == tags_b and ents_a == ents_b
        numpy.testing.assert_array_equal(hidden_a, hidden_b)


def test_unpickled_backbone_has_its_own_working_hooks(nlp):
    backbone = pickle.loads(pickle.dumps(get_backbone(nlp.get_pipe("transformer").model)))
    # Measured, not read from flags: layers 2 and 4 of 4 ("0101") see later positions.
    assert bidirectional_layers(backbone.decoder) == [False, True, False, True]
    handle = backbone.unmask_handle
    assert handle.active and handle.layers == (1, 3)
    # The handle acts on the unpickled layers: removing it restores the causal model.
    handle.remove()
    assert not any(bidirectional_layers(backbone.decoder))
    # ... and the original is untouched by that.
    assert bidirectional_layers(get_backbone(nlp.get_pipe("transformer").model).decoder) == [False, True, False, True]


def test_int8_copy_is_not_pickled_but_rebuilt(nlp):
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    object.__setattr__(backbone, "_int8_decoder", ("key", torch.nn.Linear(2, 2)))
    try:
        loaded = pickle.loads(pickle.dumps(backbone))
    finally:
        backbone.drop_int8_decoder()
    assert loaded._int8_decoder is None
