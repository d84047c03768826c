"""Sequence repetition (CausalMaskLLM.v4, repeat > 1) and early exit in the pipeline."""

import numpy
import pytest
import spacy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_cmllm.decoder.windows import plan_training_windows, plan_windows
from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import build_pipeline, save_tiny_decoder, train

V4 = "spacy-cmllm.CausalMaskLLM.v4"
WORDS = "John lives in New York and works for Google . Mary visited Paris with Acme Corp yesterday .".split()
BOS = 99


# --- windows -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=6), st.integers(1, 9), st.integers(1, 4), st.booleans())
def test_every_piece_is_read_from_the_last_copy_of_its_window(lengths, window, repeat, bos):
    rng = numpy.random.default_rng(len(lengths))
    docs = [rng.integers(0, 50, size=n) for n in lengths]
    bos_id = BOS if bos else None
    for plan in (
        plan_windows(docs, window=window, stride=max(1, window // 2), bos_id=bos_id, repeat=repeat),
        plan_training_windows(docs, window=window, bos_id=bos_id, repeat=repeat),
    ):
        read = [plan.windows[w][p] for w, p in zip(plan.gather_window, plan.gather_position)]
        assert read == [int(i) for ids in docs for i in ids]
        for w in plan.windows:
            head = 1 if bos else 0
            assert (w[0] == BOS) == bos
            body = w[head:]
            n = len(body) // repeat
            assert len(body) == n * repeat and n <= window
            assert all((body[k * n : (k + 1) * n] == body[:n]).all() for k in range(repeat))
        # Read from the last copy: nothing after a piece's position but its own copy's rest.
        for w, p in zip(plan.gather_window, plan.gather_position):
            n = (len(plan.windows[w]) - (1 if bos else 0)) // repeat
            assert p >= len(plan.windows[w]) - n


# --- the pipeline ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, byte_level_tokenizer):
    made = {}
    for family in ("llama", "mistral", "qwen2"):
        made[family] = save_tiny_decoder(
            tmp_path_factory.mktemp(family), byte_level_tokenizer, family=family, n_layers=4
        )
    made["mistral-window"] = save_tiny_decoder(
        tmp_path_factory.mktemp("mistral-window"), byte_level_tokenizer, family="mistral", n_layers=4, sliding_window=20
    )
    return made


def ready(model_dir, **config):
    nlp = build_pipeline(model_dir, **{"@architectures": V4, "mixed_precision": False, **config})
    train(nlp, steps=0)
    return nlp


def trf_vectors(nlp, texts):
    trf = nlp.get_pipe("transformer")
    docs = [nlp.make_doc(t) for t in texts]
    trf.set_annotations(docs, trf.predict(docs))
    return [d._.trf_data.model_output.last_hidden_state[0] if len(d) else None for d in docs]


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_last_copy_sees_later_tokens_and_one_copy_does_not(tiny_dirs, family, attn):
    text, changed = "John lives in New York .", "John lives in New Delhi ."
    for repeat in (1, 2):
        nlp = ready(tiny_dirs[family], unmask="0000", attn_implementation=attn, repeat=repeat)
        before, after = trf_vectors(nlp, [text, changed])
        # The first pieces ("John lives in New") are the same in both texts.
        moved = float(numpy.abs(before[:4] - after[:4]).max())
        # One copy, causal: nothing before the change moves (beyond the rounding of another
        # position in the call); the last of two copies has seen the change.
        assert moved < 1e-5 if repeat == 1 else moved > 1e-3


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("unmask", ["0000", "0011"])
def test_repeated_packed_docs_equal_docs_alone(tiny_dirs, family, attn, unmask):
    nlp = ready(tiny_dirs[family], unmask=unmask, attn_implementation=attn, window=12, stride=8, repeat=3)
    texts = ["Paris", "", "John lives in New York .", " ".join(WORDS), " ".join(WORDS * 3), "Mary ."]
    packed = trf_vectors(nlp, texts)
    for text, vectors in zip(texts, packed):
        alone = trf_vectors(nlp, [text])[0]
        if vectors is None:
            assert alone is None
        else:
            numpy.testing.assert_allclose(vectors, alone, atol=1e-4, rtol=0)
    nlp.get_pipe("transformer").model.attrs["pack"] = False
    for a, b in zip(packed, trf_vectors(nlp, texts)):
        if a is not None:
            numpy.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_repetition_counts_copies_in_the_decoder_call(tiny_dirs):
    nlp = ready(tiny_dirs["llama"], window=12, stride=8, repeat=3)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    lengths = []
    hook = backbone.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(int(kwargs["input_ids"].shape[1])), with_kwargs=True
    )
    try:
        doc = nlp.make_doc("John lives in New York .")
        n_pieces = len(backbone.piece_encoder.encode_docs([doc])[0].ids)
        nlp.get_pipe("transformer").predict([doc])
    finally:
        hook.remove()
    assert lengths == [1 + 3 * n_pieces]


def test_repeated_training_learns(tiny_dirs):
    nlp = build_pipeline(
        tiny_dirs["llama"], **{"@architectures": V4, "mixed_precision": False, "repeat": 2, "window": 12, "stride": 8}
    )
    history = train(nlp, steps=40)
    assert history[-1]["tagger"] < 0.3 * history[0]["tagger"]


def test_repeat_is_saved_and_a_mismatch_at_load_is_refused(tiny_dirs, tmp_path):
    nlp = build_pipeline(tiny_dirs["llama"], **{"@architectures": V4, "mixed_precision": False, "repeat": 2})
    train(nlp, steps=5)
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert loaded.get_pipe("transformer").model.attrs["repeat"] == 2
    text = "Mary visited Paris ."
    numpy.testing.assert_allclose(trf_vectors(loaded, [text])[0], trf_vectors(nlp, [text])[0], atol=1e-5)
    with pytest.raises(ValueError, match="E091"):
        spacy.load(tmp_path / "nlp", config={"components": {"transformer": {"model": {"repeat": 1}}}})


def test_a_pipeline_saved_without_repeat_loads_as_one_copy(tiny_dirs, tmp_path):
    nlp = build_pipeline(tiny_dirs["llama"], **{"@architectures": V4, "mixed_precision": False})
    train(nlp, steps=2)
    # As saved before repetition existed: no "repeat" among the model's attrs.
    del nlp.get_pipe("transformer").model.attrs["repeat"]
    nlp.to_disk(tmp_path / "old")
    assert spacy.load(tmp_path / "old").get_pipe("transformer").model.attrs["repeat"] == 1
    with pytest.raises(ValueError, match="E091"):
        spacy.load(tmp_path / "old", config={"components": {"transformer": {"model": {"repeat": 2}}}})


def test_a_sliding_window_that_cannot_reach_the_first_copy_is_refused(tiny_dirs):
    # 1 + 2 x 8 = 17 positions fit a window of 20; 1 + 3 x 8 = 25 do not.
    ready(tiny_dirs["mistral-window"], window=8, stride=8, repeat=2)
    with pytest.raises(ValueError, match="E090"):
        ready(tiny_dirs["mistral-window"], window=8, stride=8, repeat=3)


@pytest.mark.parametrize("repeat", [0, -1, True, 1.5, "2"])
def test_invalid_repeat_is_refused(tiny_dirs, repeat):
    from spacy_cmllm.pipeline.architectures import build_causal_mask_llm_v4

    with pytest.raises(ValueError, match="E040"):
        build_causal_mask_llm_v4(name=tiny_dirs["llama"], repeat=repeat)


def test_v4_defaults_to_the_recipe_adapters(tiny_dirs):
    v3 = build_pipeline(tiny_dirs["llama"], **{"@architectures": "spacy-cmllm.CausalMaskLLM.v3", "lora": None})
    v4 = spacy.blank("en")
    v4.add_pipe("transformer", config={"model": {"@architectures": V4, "name": tiny_dirs["llama"], "unmask": "0011"}})
    lora = v4.get_pipe("transformer").model.attrs["settings"]["lora"]
    assert lora["target_modules"] == "all-linear" and lora["dropout"] == 0.0
    assert v4.get_pipe("transformer").model.attrs["repeat"] == 1
    assert v3.get_pipe("transformer").model.attrs["repeat"] == 1


# --- early exit ----------------------------------------------------------------------------


def count_layer_calls(backbone):
    calls = []
    hooks = [
        layer.register_forward_hook(lambda *a, i=i: calls.append(i))
        for i, layer in enumerate(backbone.base_model.layers)
    ]
    return calls, hooks


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("hidden_layers", [[2], [1, 3], [-2], [0]])
def test_early_exit_gives_the_full_models_state_and_skips_the_layers_above(tiny_dirs, family, hidden_layers):
    nlp = ready(tiny_dirs[family], unmask="0011", hidden_layers=hidden_layers, window=12, stride=8)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    texts = ["John lives in New York .", " ".join(WORDS * 2)]
    calls, hooks = count_layer_calls(backbone)
    try:
        vectors = trf_vectors(nlp, texts)
    finally:
        for hook in hooks:
            hook.remove()
    top = max(i % 5 for i in hidden_layers)
    assert set(calls) == set(range(max(top, 1)))
    # The full model, run directly on the same windows, at the same states.
    for text, got in zip(texts, vectors):
        doc = nlp.make_doc(text)
        ids = backbone.piece_encoder.encode_docs([doc])[0].ids
        if len(ids) > 12:
            continue  # several windows: compared through the one-window doc
        window = torch.tensor([[backbone.tokenizer.bos_token_id, *ids.tolist()]])
        with torch.no_grad():
            states = backbone.decoder(
                input_ids=window, attention_mask=torch.ones_like(window), output_hidden_states=True
            ).hidden_states
        expected = torch.stack([states[i] for i in hidden_layers]).mean(dim=0)[0, 1:].numpy()
        numpy.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert len(backbone.base_model.layers) == 4  # put back


def test_early_exit_in_training_leaves_the_adapters_above_without_gradient(tiny_dirs):
    nlp = ready(
        tiny_dirs["llama"],
        hidden_layers=[2],
        lora={"r": 4, "alpha": 4.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    )
    model = nlp.get_pipe("transformer").model
    backbone = get_backbone(model)
    backbone.decoder.zero_grad(set_to_none=True)
    output, backprop = model.begin_update([nlp.make_doc("John lives in New York .")])
    d = [[numpy.ones_like(data.model_output.last_hidden_state)] for data in output.doc_data]
    backprop(output.unsplit_by_doc(d))
    with_grad = {
        n.split("layers.")[1].split(".")[0] for n, p in backbone.decoder.named_parameters() if p.grad is not None
    }
    assert with_grad == {"0", "1"}


def test_a_v3_pipeline_keeps_its_attention_adapters_and_predicts_the_same_after_load(tiny_dirs, tmp_path):
    """v4's recipe defaults do not reach a pipeline built with v3 and no `lora` section:
    saved, it loads with the adapters it was trained with and predicts the same."""
    from spacy_cmllm.pipeline.architectures import DEFAULT_LORA

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-cmllm.CausalMaskLLM.v3",
                "name": tiny_dirs["llama"],
                "unmask": "0011",
                "mixed_precision": False,
            }
        },
    )
    nlp.initialize()
    nlp.to_disk(tmp_path / "v3")
    loaded = spacy.load(tmp_path / "v3")
    lora = loaded.get_pipe("transformer").model.attrs["settings"]["lora"]
    assert lora["target_modules"] == DEFAULT_LORA["target_modules"] and lora["dropout"] == DEFAULT_LORA["dropout"]
    text = "John lives in New York ."
    numpy.testing.assert_allclose(trf_vectors(loaded, [text])[0], trf_vectors(nlp, [text])[0], atol=1e-6)
