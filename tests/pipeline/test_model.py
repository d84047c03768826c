import numpy
import pytest
import torch

from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import TRAIN_DATA, build_pipeline, save_tiny_decoder, train, train_examples

TEXT = "John lives in New York and works for Google ."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, byte_level_tokenizer):
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=4)


@pytest.fixture(scope="module")
def trained(model_dir):
    # float32: the equality checks below are tighter than bf16 autocast's rounding.
    nlp = build_pipeline(model_dir, mixed_precision=False)
    history = train(nlp, steps=80)
    return nlp, history


def test_weights_load_at_initialize_not_construction(tmp_path):
    missing = tmp_path / "nowhere"
    nlp = build_pipeline(missing)  # constructing reads no weights
    with pytest.raises(FileNotFoundError, match="E010.*nowhere"):
        nlp.initialize()


def test_training_lowers_both_losses_and_fits_training_docs(trained):
    nlp, history = trained
    for name in ("tagger", "ner"):
        assert history[-1][name] < 0.2 * history[0][name], name
    for words, tags, biluo in TRAIN_DATA:
        doc = nlp(" ".join(words))
        assert [t.tag_ for t in doc] == tags
        assert [t.ent_iob_ + ("-" + t.ent_type_ if t.ent_type_ else "") for t in doc] == [
            {"U": "B", "B": "B", "L": "I", "I": "I", "O": "O"}[b[0]] + b[1:] for b in biluo
        ]


def test_only_adapters_and_heads_change(model_dir):
    from thinc.api import Adam

    from tests.tiny import train_examples

    nlp = build_pipeline(model_dir)
    train(nlp, steps=0)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    before = {n: p.detach().clone() for n, p in backbone.decoder.named_parameters()}
    tagger_W = nlp.get_pipe("tagger").model.get_ref("softmax").get_param("W").copy()
    optimizer = Adam(0.003)
    for _ in range(3):
        nlp.update(train_examples(nlp), sgd=optimizer)
    assert not numpy.array_equal(tagger_W, nlp.get_pipe("tagger").model.get_ref("softmax").get_param("W"))
    changed = {n for n, p in backbone.decoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "no decoder weight changed"
    assert all("lora_" in n for n in changed), sorted(changed)[:3]
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


def test_pipe_equals_call(trained):
    nlp, _ = trained
    texts = [TEXT, "Mary visited Paris .", "", "  ", "A much longer text about New York and Paris , " * 5]
    piped = list(nlp.pipe(texts, batch_size=3))
    for text, doc in zip(texts, piped):
        alone = nlp(text)
        assert [t.tag_ for t in doc] == [t.tag_ for t in alone]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in alone.ents]
        if len(doc):
            numpy.testing.assert_allclose(
                doc._.trf_data.model_output.last_hidden_state,
                alone._.trf_data.model_output.last_hidden_state,
                atol=1e-4,
                rtol=1e-4,
            )


def test_outputs_are_float32_and_exactly_aligned(trained):
    nlp, _ = trained
    doc = nlp("Don't stop: New   York's 3,000-year-old 🇫🇷 flag\n\nwaves.")
    data = doc._.trf_data
    hidden = data.model_output.last_hidden_state
    assert hidden.dtype == numpy.float32 and hidden.shape[0] == 1
    assert len(data.align.lengths) == len(doc)
    assert (data.align.lengths >= 1).all()
    # Every piece belongs to exactly one token, in order.
    assert data.align.dataXd.tolist() == list(range(hidden.shape[1]))


def test_hidden_layer_selection(model_dir):
    last = build_pipeline(model_dir, hidden_layers=[-1])
    mixed = build_pipeline(model_dir, hidden_layers=[2, -1])
    for nlp in (last, mixed):
        train(nlp, steps=0)
    a = last.get_pipe("transformer")(last.make_doc(TEXT))._.trf_data.model_output.last_hidden_state
    b = mixed.get_pipe("transformer")(mixed.make_doc(TEXT))._.trf_data.model_output.last_hidden_state
    assert a.shape == b.shape and not numpy.allclose(a, b)


def test_bfloat16_base_trains_on_cpu(model_dir):
    nlp = build_pipeline(model_dir, dtype="bfloat16")
    history = train(nlp, steps=15)
    assert history[-1]["tagger"] < history[0]["tagger"]
    doc = nlp(TEXT)
    assert doc._.trf_data.model_output.last_hidden_state.dtype == numpy.float32


def test_mixed_precision_autocast(model_dir):
    nlp = build_pipeline(model_dir, mixed_precision=True)
    history = train(nlp, steps=5)
    assert all(numpy.isfinite(h["ner"]) for h in history)


@pytest.mark.parametrize(
    "native,capability,expected",
    [(True, "AVX512", True), (True, "AVX2", False), (False, "AVX512", False), (False, "AVX2", False)],
)
def test_bf16_autocast_by_default_only_where_the_cpu_kernels_have_it(monkeypatch, native, capability, expected):
    """null = bf16 where the CPU computes it natively AND PyTorch's kernels may use AVX512
    (ATEN_CPU_CAPABILITY=avx2 holds them below it: bf16 would then be slower than float32)."""
    from spacy_cmllm.pipeline.model import use_bf16_autocast

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    cpu = torch.device("cpu")
    assert use_bf16_autocast(None, cpu) is expected
    assert use_bf16_autocast(True, cpu) is True and use_bf16_autocast(False, cpu) is False


def test_frozen_decoder_without_lora(model_dir):
    nlp = build_pipeline(model_dir, lora=None)
    history = train(nlp, steps=10)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    assert not backbone.trainable()
    assert history[-1]["tagger"] < history[0]["tagger"]


@pytest.mark.parametrize(
    "override,code",
    [
        ({"unmask": "00x1"}, "E001"),
        ({"unmask": ""}, "E001"),
        ({"window": 0}, "E040"),
        ({"stride": 9, "window": 8}, "E040"),
        ({"hidden_layers": []}, "E040"),
        ({"dtype": "float8"}, "E013"),
        ({"quantization": "8bit"}, "E014"),
        ({"lora": {"r": 0}}, "E020"),
    ],
)
def test_config_errors_at_construction(model_dir, override, code):
    with pytest.raises(Exception, match=code):
        build_pipeline(model_dir, **override)


def test_unmask_out_of_range_at_initialize(model_dir):
    nlp = build_pipeline(model_dir, unmask=[9])
    with pytest.raises(ValueError, match="E001.*out of range"):
        nlp.initialize()


@pytest.mark.parametrize("family", ["byte_level", "sp_legacy"])
def test_alignment_with_both_tokenizer_families(request, tmp_path, family):
    tokenizer = request.getfixturevalue(f"{family}_tokenizer")
    nlp = build_pipeline(save_tiny_decoder(tmp_path / family, tokenizer, n_layers=2), unmask="01")
    train(nlp, steps=0)
    doc = nlp("Don't stop, New York's mayor said:\n\n  \"yes\" 🇫🇷 東京")
    data = doc._.trf_data
    lengths = data.align.lengths.tolist()
    assert len(lengths) == len(doc) and min(lengths) >= 1
    assert data.align.dataXd.tolist() == list(range(sum(lengths)))
    # Each token's pieces are the pieces of that token alone (with its preceding space).
    encoder = nlp.get_pipe("transformer").model.shims[0]._model.piece_encoder
    ids = data.wordpieces.input_ids[0].tolist()
    start = 0
    for token, n in zip(doc, lengths):
        alone = encoder.encode_tokens([token.text], [token.i > 0 and doc[token.i - 1].whitespace_ != ""])
        assert ids[start : start + n] == alone.ids.tolist(), token.text
        start += n


def test_warns_when_the_last_listener_skips_a_batch(model_dir):
    import warnings

    from spacy.training import Example
    from thinc.api import Adam

    from tests.tiny import train_examples

    nlp = build_pipeline(model_dir)
    train(nlp, steps=1)
    optimizer = Adam(0.001)
    # Tags but no entity annotation: `ner` (the last listener) skips the batch.
    untagged = [Example.from_dict(nlp.make_doc(" ".join(w)), {"words": w, "tags": t}) for w, t, _ in TRAIN_DATA]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*W001")
        nlp.update(train_examples(nlp), sgd=optimizer)
        nlp.update(train_examples(nlp), sgd=optimizer)  # backprop ran: no warning
        nlp.update(untagged, sgd=optimizer)
    with pytest.warns(UserWarning, match="W001.*no gradient"):
        nlp.update(train_examples(nlp), sgd=optimizer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*W001")  # once per model, not per batch
        nlp.update(untagged, sgd=optimizer)
        nlp.update(train_examples(nlp), sgd=optimizer)


def test_training_computes_each_piece_once_prediction_overlaps(model_dir):
    """A spy on the decoder: in nlp.update every real position is one piece of the batch
    (or a window's BOS) exactly once; prediction of the same docs runs overlapping windows."""
    from spacy.training import Example

    nlp = build_pipeline(model_dir, window=8, stride=4, mixed_precision=False)
    train(nlp, steps=0)
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    calls = []
    hook = backbone.decoder.register_forward_pre_hook(
        # attention_mask None: nothing padded in that call.
        lambda module, args, kwargs: calls.append(
            (
                kwargs["input_ids"].clone(),
                torch.ones_like(kwargs["input_ids"])
                if kwargs["attention_mask"] is None
                else kwargs["attention_mask"].clone(),
            )
        ),
        with_kwargs=True,
    )
    words = "John lives in New York and works for Google . Mary visited Paris with Acme Corp yesterday .".split()
    sent_starts = [i in (0, 10) for i in range(len(words))]
    doc = nlp.make_doc(" ".join(words))
    for token, start in zip(doc, sent_starts):
        token.is_sent_start = start
    examples = [Example.from_dict(doc, {"words": words, "sent_starts": sent_starts})]
    pieces = backbone.piece_encoder.encode_docs([doc])[0]
    bos = backbone.tokenizer.bos_token_id
    try:
        nlp.update(examples, sgd=None)
        trained = [ids[mask.bool()] for ids, mask in calls]
        calls.clear()
        nlp(" ".join(words))
        predicted = [ids[mask.bool()] for ids, mask in calls]
    finally:
        hook.remove()
    real = torch.cat(trained)
    n_windows = int((real == bos).sum())
    assert len(pieces.ids) > 8, "the doc must need several windows"
    assert len(real) == len(pieces.ids) + n_windows
    assert sorted(real[real != bos].tolist()) == sorted(pieces.ids.tolist())
    # Prediction reads every piece from a window with context on both sides: more positions.
    assert sum(len(ids) for ids in predicted) > len(real)


def test_unpadded_calls_pass_no_mask(model_dir):
    """A decoder call whose rows are all full gets attention_mask None, decided on the host:
    no GPU synchronisation to find out, no 4-D mask, so SDPA may pick its flash kernel.
    (float32: under bf16 autocast on a CPU, prediction rounds widths up, which pads.)"""
    nlp = build_pipeline(model_dir, mixed_precision=False)
    nlp.initialize(lambda: train_examples(nlp))
    trf = nlp.get_pipe("transformer")
    backbone = get_backbone(trf.model)
    masks = []
    hook = backbone.decoder.register_forward_pre_hook(
        lambda m, a, k: masks.append(k.get("attention_mask")), with_kwargs=True
    )
    long, short = nlp.make_doc("one two three four five six"), nlp.make_doc("one two")
    try:
        same = trf.predict([long, nlp.make_doc(long.text)])
        assert masks == [None]
        masks.clear()
        mixed = trf.predict([long, short])
        assert len(masks) == 1 and isinstance(masks[0], torch.Tensor) and bool((masks[0] == 0).any())
    finally:
        hook.remove()
    # The same vectors either way.
    first = lambda batch: batch.doc_data[0].model_output.last_hidden_state  # noqa: E731
    numpy.testing.assert_allclose(first(same), first(mixed), atol=1e-5)


def test_cpu_bf16_prediction_rounds_widths_up(model_dir, monkeypatch):
    """Under bf16 autocast on a CPU, prediction pads every decoder call to a width that is a
    multiple of CPU_BF16_WIDTH_MULTIPLE (oneDNN keeps a kernel per shape, so a stream of
    Docs of every length would keep making new ones); the vectors are those of exact widths,
    and training keeps exact widths (each padded position would cost a backward pass)."""
    from spacy_cmllm.pipeline import model as model_module

    nlp = build_pipeline(model_dir, mixed_precision=True)
    nlp.initialize(lambda: train_examples(nlp))
    trf = nlp.get_pipe("transformer")
    backbone = get_backbone(trf.model)
    widths = []
    hook = backbone.decoder.register_forward_pre_hook(
        lambda m, a, k: widths.append(k["input_ids"].shape[1]), with_kwargs=True
    )
    docs = [nlp.make_doc(TEXT), nlp.make_doc("two words")]
    try:
        rounded = trf.predict(docs)
        assert widths and all(w % model_module.CPU_BF16_WIDTH_MULTIPLE == 0 for w in widths), widths
        widths.clear()
        monkeypatch.setattr(model_module, "CPU_BF16_WIDTH_MULTIPLE", 1)
        exact = trf.predict(docs)
        assert widths and any(w % 32 for w in widths), widths
        widths.clear()
        monkeypatch.undo()
        nlp.update(train_examples(nlp), sgd=None)
        assert widths and any(w % 32 for w in widths), widths
    finally:
        hook.remove()
    for i in range(len(docs)):
        a = rounded.doc_data[i].model_output.last_hidden_state
        b = exact.doc_data[i].model_output.last_hidden_state
        numpy.testing.assert_allclose(a, b, atol=0.05, rtol=0.05)
