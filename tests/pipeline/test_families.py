"""Qwen2, Gemma-2 and Phi-3 through the whole pipeline: train, save, load, same predictions,
and the unmask the config asks for, measured on the loaded decoder; adapters on every
linear layer ("all-linear") merged into the int8 copy."""

import numpy
import pytest
import spacy

from spacy_cmllm import bidirectional_layers
from tests.tiny import build_pipeline, save_tiny_decoder, train

TEXTS = ["John lives in New York and works for Google .", "Mary visited Paris with Acme Corp yesterday ."]
# Gemma-2 soft-caps attention scores, which only the eager kernel applies (E023 on sdpa).
ATTENTION = {"qwen2": "sdpa", "gemma2": "eager", "phi3": "sdpa"}


def backbone(nlp):
    return nlp.get_pipe("transformer").model.shims[0]._model


def predictions(nlp):
    docs = list(nlp.pipe(TEXTS))
    return (
        [[t.tag_ for t in doc] for doc in docs],
        [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs],
        [doc._.trf_data.model_output.last_hidden_state.copy() for doc in docs],
    )


@pytest.mark.parametrize("family", sorted(ATTENTION))
def test_family_trains_saves_and_loads(tmp_path, byte_level_tokenizer, family):
    model_dir = save_tiny_decoder(tmp_path / family, byte_level_tokenizer, family=family, n_layers=4)
    nlp = build_pipeline(
        model_dir,
        unmask="0011",
        attn_implementation=ATTENTION[family],
        lora={"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": "attention"},
    )
    losses = train(nlp, steps=4)
    assert losses[-1]["tagger"] < losses[0]["tagger"]
    assert bidirectional_layers(backbone(nlp).decoder) == [False, False, True, True]
    before = predictions(nlp)
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert bidirectional_layers(backbone(loaded).decoder) == [False, False, True, True]
    after = predictions(loaded)
    assert before[:2] == after[:2]
    for a, b in zip(before[2], after[2]):
        numpy.testing.assert_array_equal(a, b)


def test_phi3_with_llama_target_names_fails_clearly(tmp_path, byte_level_tokenizer):
    model_dir = save_tiny_decoder(tmp_path / "phi3", byte_level_tokenizer, family="phi3", n_layers=2)
    nlp = build_pipeline(model_dir, unmask="01")  # target_modules q_proj, v_proj
    with pytest.raises(ValueError, match=r"E021.*\['q_proj', 'v_proj'\].*'qkv_proj'.*\"attention\""):
        train(nlp, steps=0)


def test_gemma2_on_sdpa_is_refused(tmp_path, byte_level_tokenizer):
    model_dir = save_tiny_decoder(tmp_path / "gemma2", byte_level_tokenizer, family="gemma2", n_layers=2)
    nlp = build_pipeline(model_dir, unmask="01", attn_implementation="sdpa")
    with pytest.raises(ValueError, match="E023"):
        train(nlp, steps=0)


@pytest.mark.parametrize("family", ["llama", "mistral", "phi3"])
def test_adapters_on_every_linear_layer_train_and_merge_into_int8(tmp_path, byte_level_tokenizer, family):
    import torch

    from spacy_cmllm.pipeline.model import int8_decoder

    model_dir = save_tiny_decoder(tmp_path / family, byte_level_tokenizer, family=family, n_layers=4)
    nlp = build_pipeline(
        model_dir,
        unmask="0011",
        lora={"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": "all-linear"},
        **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3", "mixed_precision": False},
    )
    train(nlp, steps=4)
    adapted = {
        n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in backbone(nlp).decoder.named_parameters() if ".lora_" in n
    }
    assert {"down_proj", "o_proj"} <= adapted and ({"gate_proj", "up_proj"} <= adapted or "gate_up_proj" in adapted)
    nlp.to_disk(tmp_path / "nlp")
    fp32 = spacy.load(tmp_path / "nlp")
    int8 = spacy.load(tmp_path / "nlp", config={"components": {"transformer": {"model": {"int8": True}}}})
    # The MLP adapters are merged into the weights before quantizing: no float Linear is left.
    quantized = int8_decoder(int8.get_pipe("transformer").model)
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.layers.modules())
    a, b = fp32(TEXTS[0]), int8(TEXTS[0])
    va, vb = a._.trf_data.model_output.last_hidden_state, b._.trf_data.model_output.last_hidden_state
    cosine = (va * vb).sum(-1) / numpy.linalg.norm(va, axis=-1) / numpy.linalg.norm(vb, axis=-1)
    assert cosine.min() > 0.95
