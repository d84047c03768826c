"""Hostile input never crashes and never loses a token."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tiny import build_pipeline, save_tiny_decoder, train

CASES = [
    "",
    " ",
    "   \n\n\t  ",
    "a",
    "👩‍👩‍👧‍👦 🇫🇷🇩🇪 🏳️‍🌈",
    "東京都は日本の首都です。",
    "مرحبا بالعالم שלום עולם",
    "e\u0301\u0302\u0303 Zalgo: Z\u0351\u0352\u0353a\u0354l\u0355g\u0356o",
    "zero\u200bwidth\u200cjoin\u200dand\ufeffBOM",
    "control \x00 NUL \x01\x02\x1b[31m red \x7f",
    "x" * 3000,
    "many     spaces\n\n\n\nand\r\nnewlines\u2028\u2029",
    "!!! ??? ... --- *** ### $$$ 123 456.789",
    "<s> </s> <|endoftext|> <|im_start|> [CLS] <unk>",
]


@pytest.fixture(scope="module")
def nlp(tmp_path_factory, byte_level_tokenizer):
    model_dir = save_tiny_decoder(tmp_path_factory.mktemp("tiny"), byte_level_tokenizer, n_layers=2, hidden_size=32)
    nlp = build_pipeline(model_dir, unmask="01", window=16, stride=8)
    train(nlp, steps=5)
    return nlp


def check(doc, text):
    assert doc.text == text  # nothing lost
    data = doc._.trf_data
    if len(doc):
        assert len(data.align.lengths) == len(doc) and data.align.lengths.min() >= 1
    for token in doc:
        assert token.tag_ != "", repr(token.text)
    for ent in doc.ents:
        assert 0 <= ent.start < ent.end <= len(doc) and ent.label_


@pytest.mark.parametrize("text", CASES, ids=range(len(CASES)))
def test_cases(nlp, text):
    check(nlp(text), text)


def test_cases_as_one_batch(nlp):
    for text, doc in zip(CASES, nlp.pipe(CASES, batch_size=5)):
        check(doc, text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=6))
def test_fuzz_pipe(nlp, texts):
    for text, doc in zip(texts, nlp.pipe(texts, batch_size=4)):
        check(doc, text)
