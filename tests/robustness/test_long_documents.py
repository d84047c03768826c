"""Long documents: every token gets a vector and a tag; no truncation; bounded decoder calls."""

import numpy
import pytest

from spacy_cmllm.pipeline.model import get_backbone
from tests.tiny import build_pipeline, save_tiny_decoder, train

WORDS = "The committee in New York said on Monday that Google and Acme Corp would meet John Smith .".split()


@pytest.fixture(scope="module")
def nlp(tmp_path_factory, byte_level_tokenizer):
    model_dir = save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=2, hidden_size=32)
    nlp = build_pipeline(model_dir, unmask="01", window=64, stride=48, max_batch_pieces=1024)
    train(nlp, steps=2)
    return nlp


def spy_on_decoder(nlp):
    """Record the (batch, length) of every decoder call."""
    backbone = get_backbone(nlp.get_pipe("transformer").model)
    shapes = []
    hook = backbone.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    return shapes, hook


def long_text(n_tokens):
    repeats = n_tokens // len(WORDS) + 1
    return " ".join((WORDS * repeats)[:n_tokens])


@pytest.mark.slow
def test_20k_token_document_through_call_and_pipe(nlp):
    text = long_text(20_500)
    shapes, hook = spy_on_decoder(nlp)
    try:
        doc = nlp(text)
        [piped] = list(nlp.pipe([text]))
    finally:
        hook.remove()
    assert len(doc) == 20_500
    for d in (doc, piped):
        data = d._.trf_data
        assert len(data.align.lengths) == len(d) and data.align.lengths.min() >= 1
        hidden = data.model_output.last_hidden_state
        assert hidden.shape[1] == data.align.lengths.sum()  # every piece of every token
        assert numpy.isfinite(hidden).all()
        assert all(t.tag_ for t in d)
    # Memory stays linear in the document: the decoder only ever sees bounded windows,
    # in calls of at most max_batch_pieces padded pieces, never the whole document.
    assert shapes and max(length for _, length in shapes) <= 64 + 1
    assert max(batch * length for batch, length in shapes) <= 1024
    numpy.testing.assert_allclose(
        doc._.trf_data.model_output.last_hidden_state, piped._.trf_data.model_output.last_hidden_state, atol=1e-4
    )


def test_window_count_grows_linearly(nlp):
    shapes, hook = spy_on_decoder(nlp)
    counts = []
    try:
        for n in (1000, 2000, 4000):
            shapes.clear()
            nlp(long_text(n))
            counts.append(sum(batch for batch, _ in shapes))
    finally:
        hook.remove()
    # Twice the text, about twice the windows (linear, not quadratic).
    assert 1.7 < counts[1] / counts[0] < 2.3 and 1.7 < counts[2] / counts[1] < 2.3
