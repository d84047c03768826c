"""Packed windows in the pipeline (CausalMaskLLM.v3, pack = true) and int8 prediction."""

import numpy
import pytest
import spacy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_cmllm.decoder.packed_rows import pack_rows, pad_packed, padding_waste
from spacy_cmllm.decoder.windows import WidthRounding, batch_windows
from spacy_cmllm.pipeline.model import get_backbone, int8_decoder
from tests.tiny import build_pipeline, save_tiny_decoder, train, train_examples

V3 = "spacy-cmllm.CausalMaskLLM.v3"
WORDS = "John lives in New York and works for Google . Mary visited Paris with Acme Corp yesterday .".split()


# --- rows ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=60), st.integers(1, 33))
def test_pack_rows_places_every_window_once(lengths, capacity):
    rows = pack_rows(lengths, capacity=capacity)
    placed = sorted(i for row in rows for i in row)
    assert placed == [i for i, n in enumerate(lengths) if n > 0]
    for row in rows:
        fill = sum(lengths[i] for i in row)
        assert fill <= capacity or len(row) == 1


def test_pack_rows_fills_rows_of_short_windows():
    rng = numpy.random.default_rng(0)
    lengths = rng.integers(2, 40, size=300).tolist()
    rows = pack_rows(lengths, capacity=129)
    fills = [sum(lengths[i] for i in row) for row in rows]
    assert padding_waste(fills, batch_windows(fills, max_pieces=4096)) < 0.02
    one_per_row = batch_windows(lengths, max_pieces=4096)
    assert padding_waste(lengths, one_per_row) > 0.03


def test_pack_rows_balances_a_few_short_windows():
    """11 sentences fill one and a bit rows of 257: two even rows instead, one call, no
    padding to speak of."""
    lengths = [46, 31, 26, 23, 21, 21, 19, 19, 16, 16, 13, 40, 12]
    rows = pack_rows(lengths, capacity=257)
    assert len(rows) == len(pack_rows(lengths, capacity=257, balance=False)) == 2
    fills = [sum(lengths[i] for i in row) for row in rows]
    assert padding_waste(fills, batch_windows(fills, max_pieces=4096)) < 0.05


def test_pad_packed_lays_out_segments():
    windows = [numpy.array([7, 1, 2]), numpy.array([7, 3]), numpy.array([7, 4, 5, 6])]
    batch = pad_packed(windows, [[2, 1], [0]], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 4, 5, 6, 7, 3], [7, 1, 2, 0, 0, 0]]
    assert batch.segments.tolist() == [[1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]]
    assert batch.window_row.tolist() == [1, 0, 0] and batch.window_column.tolist() == [0, 4, 0]


def test_pad_packed_rounds_the_width_up_with_padding():
    windows = [numpy.array([7, 1, 2]), numpy.array([7, 3])]
    batch = pad_packed(windows, [[0, 1]], pad_id=0, widths=WidthRounding(4))
    assert batch.input_ids.tolist() == [[7, 1, 2, 7, 3, 0, 0, 0]]
    assert batch.segments.tolist() == [[1, 1, 1, 2, 2, 0, 0, 0]]


# --- the pipeline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("llama"), byte_level_tokenizer, n_layers=4)


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(
        tmp_path_factory.mktemp("mistral"), byte_level_tokenizer, family="mistral", n_layers=4, sliding_window=6
    )


def ready(model_dir, **config):
    # float32 without autocast: the equality below is tighter than bf16's rounding.
    nlp = build_pipeline(model_dir, **{"@architectures": V3, "mixed_precision": False, **config})
    train(nlp, steps=0)
    return nlp


def texts_of_many_lengths():
    # One token, empty, a few sentences, and docs longer than a window (window=12 below).
    return [
        "Paris",
        "",
        "John lives in New York .",
        " ".join(WORDS),
        " ".join(WORDS * 3),
        "Mary .",
        "A",
        " ".join(WORDS[:7]),
    ]


def trf_vectors(nlp, texts):
    trf = nlp.get_pipe("transformer")
    docs = [nlp.make_doc(t) for t in texts]
    trf.set_annotations(docs, trf.predict(docs))
    return [d._.trf_data.model_output.last_hidden_state if len(d) else None for d in docs]


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_docs_equal_docs_alone(request, family, attn):
    nlp = ready(request.getfixturevalue(f"{family}_dir"), attn_implementation=attn, window=12, stride=8)
    texts = texts_of_many_lengths()
    packed = trf_vectors(nlp, texts)
    for text, vectors in zip(texts, packed):
        alone = trf_vectors(nlp, [text])[0]
        if vectors is None:
            assert alone is None
            continue
        numpy.testing.assert_allclose(vectors, alone, atol=1e-4, rtol=0)
    # ... and equal to the unpacked pipeline on the same batch.
    nlp.get_pipe("transformer").model.attrs["pack"] = False
    for a, b in zip(packed, trf_vectors(nlp, texts)):
        if a is not None:
            numpy.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def decoder_spy(backbone):
    counted = {"positions": 0, "real": 0, "calls": 0}

    def spy(module, args, kwargs):
        counted["calls"] += 1
        counted["positions"] += int(kwargs["input_ids"].numel())
        segments = kwargs.get("cmllm_segments")
        mask = kwargs["attention_mask"]  # None: nothing padded
        counted["real"] += (
            int((segments > 0).sum())
            if segments is not None
            else int(mask.sum())
            if mask is not None
            else int(kwargs["input_ids"].numel())
        )

    return counted, backbone.decoder.register_forward_pre_hook(spy, with_kwargs=True)


def test_packing_leaves_little_padding_on_300_short_docs(llama_dir):
    nlp = ready(llama_dir, window=64, stride=48)
    rng = numpy.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 25)))) for _ in range(300)]
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    counted, hook = decoder_spy(backbone)
    try:
        list(nlp.pipe(texts, batch_size=300))
        packed = dict(counted)
        nlp.get_pipe("transformer").model.attrs["pack"] = False
        counted.update(positions=0, real=0, calls=0)
        list(nlp.pipe(texts, batch_size=300))
        unpacked = dict(counted)
    finally:
        hook.remove()
    assert packed["real"] == unpacked["real"]  # the same pieces and BOS sinks
    assert packed["real"] / packed["positions"] >= 0.95, packed
    assert packed["positions"] < unpacked["positions"]
    # Training packs too: as many real positions, in fewer calls.
    model = nlp.get_pipe("transformer").model
    docs = [nlp.make_doc(t) for t in texts]
    seen = {}
    for pack in (False, True):
        model.attrs["pack"] = pack
        counted, hook = decoder_spy(backbone)
        try:
            model.begin_update(docs)
        finally:
            hook.remove()
        backbone.awaiting_backprop = False
        seen[pack] = dict(counted)
    assert seen[True]["real"] == seen[False]["real"]
    assert seen[True]["real"] / seen[True]["positions"] >= 0.95, seen
    assert seen[True]["calls"] < seen[False]["calls"] / 3, seen


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_packed_training_gradients_equal_unpacked(request, family):
    """The same batch, packed and unpacked: the same adapter gradients, fewer positions."""

    nlp = ready(request.getfixturevalue(f"{family}_dir"), window=12, stride=8)
    model = nlp.get_pipe("transformer").model
    backbone = get_backbone(model)
    docs = [nlp.make_doc(t) for t in texts_of_many_lengths()]
    rng = numpy.random.default_rng(0)
    grads, positions = {}, {}
    for pack in (False, True):
        model.attrs["pack"] = pack
        backbone.decoder.zero_grad(set_to_none=True)
        counted, hook = decoder_spy(backbone)
        try:
            output, backprop = model.begin_update(docs)
        finally:
            hook.remove()
        positions[pack] = (counted["positions"], counted["calls"])
        rng = numpy.random.default_rng(0)
        d = [
            [rng.standard_normal(data.model_output.last_hidden_state.shape).astype("float32")]
            for data in output.doc_data
            if data.model_output
        ]
        d_output = output.unsplit_by_doc(d)
        backprop(d_output)
        grads[pack] = {n: p.grad.clone() for n, p in backbone.decoder.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys() and grads[True]
    for name in grads[False]:
        torch.testing.assert_close(grads[True][name], grads[False][name], atol=1e-4, rtol=1e-3, msg=name)
    # Few, fuller decoder calls (unpacked training already splits calls to bound padding).
    assert positions[True][1] < positions[False][1]
    assert positions[True][0] <= 1.03 * positions[False][0]


def test_packed_training_learns(llama_dir):
    nlp = build_pipeline(llama_dir, **{"@architectures": V3, "mixed_precision": False})
    history = train(nlp, steps=40)
    assert history[-1]["tagger"] < 0.3 * history[0]["tagger"]


def test_v2_does_not_pack_v3_does(llama_dir):
    v2 = build_pipeline(llama_dir, **{"@architectures": "spacy-cmllm.CausalMaskLLM.v2"})
    v3 = build_pipeline(llama_dir, **{"@architectures": V3})
    assert v2.get_pipe("transformer").model.attrs["pack"] is False
    assert v3.get_pipe("transformer").model.attrs["pack"] is True
    assert v3.get_pipe("transformer").model.attrs["int8"] is False


@pytest.mark.parametrize(
    "override,code",
    [
        ({"pack": "yes"}, "E079"),
        ({"int8": 1}, "E079"),
        ({"int8_smoothing": 1.5}, "E079"),
        ({"int8_smoothing": True}, "E079"),
        ({"int8": True, "quantization": "4bit"}, "E077"),
    ],
)
def test_v3_setting_errors(llama_dir, override, code):
    from spacy_cmllm.pipeline.architectures import build_causal_mask_llm_v3

    with pytest.raises(ValueError, match=code):
        build_causal_mask_llm_v3(name=llama_dir, **override)


def test_packing_refuses_kernels_without_custom_masks(llama_dir):
    nlp = ready(llama_dir)
    get_backbone(nlp.get_pipe("transformer").model).base_model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="E075"):
        nlp("John lives in New York .")


# --- int8 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_dir(llama_dir, tmp_path_factory):
    nlp = build_pipeline(llama_dir, **{"@architectures": V3, "mixed_precision": False})
    train(nlp, steps=40)
    path = tmp_path_factory.mktemp("trained") / "nlp"
    nlp.to_disk(path)
    return path


def test_int8_loads_predicts_and_is_refused_in_training(trained_dir):
    from thinc.api import Adam

    fp32 = spacy.load(trained_dir)
    int8 = spacy.load(trained_dir, config={"components": {"transformer": {"model": {"int8": True}}}})
    model = int8.get_pipe("transformer").model
    assert model.attrs["int8"] is True
    backbone = get_backbone(model)
    text = "John lives in New York and works for Google ."
    a, b = fp32(text), int8(text)
    quantized = int8_decoder(model)
    assert any(type(m).__name__ == "Int8Linear" for m in quantized.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    # The trainable decoder keeps its adapters and stays float.
    assert any("lora_" in n for n, _ in backbone.decoder.named_parameters())
    va, vb = a._.trf_data.model_output.last_hidden_state, b._.trf_data.model_output.last_hidden_state
    assert va.shape == vb.shape and not numpy.array_equal(va, vb)
    cosine = (va * vb).sum(-1) / numpy.linalg.norm(va, axis=-1) / numpy.linalg.norm(vb, axis=-1)
    assert cosine.min() > 0.95
    assert [t.tag_ for t in a] == [t.tag_ for t in b]
    with pytest.raises(ValueError, match="E076"):
        int8.update(train_examples(int8), sgd=Adam(0.001))


def test_int8_in_the_config_refuses_training(llama_dir):
    nlp = build_pipeline(llama_dir, **{"@architectures": V3, "int8": True})
    with pytest.raises(ValueError, match="E076"):
        train(nlp, steps=1)


def test_int8_batched_docs_equal_docs_alone(trained_dir):
    """Per-token activation scales: a doc's int8 vectors do not depend on its batch."""
    nlp = spacy.load(
        trained_dir, config={"components": {"transformer": {"model": {"int8": True, "mixed_precision": False}}}}
    )
    texts = texts_of_many_lengths()
    batched = trf_vectors(nlp, texts)
    for text, vectors in zip(texts, batched):
        if vectors is not None:
            numpy.testing.assert_allclose(vectors, trf_vectors(nlp, [text])[0], atol=1e-3, rtol=0)


def test_int8_smoothing_is_switched_at_load(trained_dir):
    """int8_smoothing is a run setting: the config at spacy.load wins, and the copy follows it."""
    copies = {}
    for alpha in (0.0, 0.5):
        nlp = spacy.load(
            trained_dir, config={"components": {"transformer": {"model": {"int8": True, "int8_smoothing": alpha}}}}
        )
        model = nlp.get_pipe("transformer").model
        assert model.attrs["int8_smoothing"] == alpha
        nlp("John lives in New York .")
        copies[alpha] = int8_decoder(model)
    from spacy_cmllm.decoder.layout import decoder_layers

    norms = [decoder_layers(copies[alpha])[0].input_layernorm.weight for alpha in (0.0, 0.5)]
    assert not torch.equal(*norms)
