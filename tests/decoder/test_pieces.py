import re

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, normalizers
from transformers import GPT2TokenizerFast
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

from spacy_cmllm.decoder.pieces import PieceEncoder, TokenPieces


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


TEXTS = [
    "Hello, world! Don't stop now.",
    "New York's mayor said: \"We can't wait.\" Prices rose 4.5% (about $3.50).",
    "Dr. Smith  met Mr.   Jones on 2024-01-01 at 09:30;\n\nnobody came.\n",
    " Leading space, and trailing spaces.   ",
]

ODD_TEXTS = [
    "a  b   c \n\n d\t\te \r\n f",  # whitespace tokens
    "x\x00y \x00 \x01\x02 \x7f \x1b[0m",  # NUL and control characters
    "👩\u200d👩\u200d👧 family 👍🏽 \u200b \u200c\u200d \ufeff",  # emoji, ZWJ, zero-width
    "日本語のテキスト。中文文本，한국어",  # CJK
    "שלום עולם مرحبا بالعالم \u200f\u200e",  # RTL and direction marks
    "e\u0301 a\u0308\u0304 \u0301 Z\u0351\u0352\u0357",  # combining marks
    "\ufffd \U0010ffff \ue000",  # replacement character, private use
]


def piece_bytes(tokenizer, piece_id: int) -> bytes:
    """The bytes of text a piece stands for (its space marker as a space)."""
    piece = tokenizer.convert_ids_to_tokens(int(piece_id))
    if isinstance(tokenizer, GPT2TokenizerFast):
        decoder = {char: byte for byte, char in bytes_to_unicode().items()}
        return bytes(decoder[char] for char in piece)
    match = re.fullmatch(r"<0x([0-9A-F]{2})>", piece)
    if match:
        return bytes([int(match.group(1), 16)])
    return piece.replace("\u2581", " ").encode("utf-8")


def split_pieces(pieces: TokenPieces):
    ends = numpy.cumsum(pieces.lengths)
    return numpy.split(pieces.ids, ends[:-1]) if len(ends) else []


def space_before(doc):
    return [i > 0 and doc[i - 1].whitespace_ != "" for i in range(len(doc))]


def assert_well_formed(pieces: TokenPieces, n_tokens: int):
    assert pieces.ids.dtype == numpy.int64 and pieces.ids.ndim == 1
    assert pieces.lengths.dtype == numpy.int32 and pieces.lengths.shape == (n_tokens,)
    assert (pieces.lengths >= 1).all()
    assert pieces.lengths.sum() == len(pieces.ids)


def assert_reproduces_text(tokenizer, doc, pieces: TokenPieces):
    for token, spaced, ids in zip(doc, space_before(doc), split_pieces(pieces)):
        text = b"".join(piece_bytes(tokenizer, i) for i in ids).decode("utf-8")
        assert text == (" " if spaced else "") + token.text


@pytest.mark.parametrize("text", TEXTS + ODD_TEXTS)
def test_pieces_reproduce_each_token(tokenizer, nlp, text):
    doc = nlp(text)
    pieces = PieceEncoder(tokenizer).encode_doc(doc)
    assert_well_formed(pieces, len(doc))
    assert_reproduces_text(tokenizer, doc, pieces)


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_reproduce_the_doc(tokenizer, nlp, text):
    doc = nlp(text)
    pieces = PieceEncoder(tokenizer).encode_doc(doc)
    decoded = b"".join(piece_bytes(tokenizer, i) for i in pieces.ids).decode("utf-8")
    # Only the last token's trailing whitespace has no piece.
    assert decoded == doc.text[: len(doc.text) - len(doc[-1].whitespace_)]


def test_contraction_pieces_are_disjoint(tokenizer, nlp):
    doc = nlp("I don't know")
    assert [t.text for t in doc] == ["I", "do", "n't", "know"]
    pieces = PieceEncoder(tokenizer).encode_doc(doc)
    do, nt = split_pieces(pieces)[1:3]
    assert b"".join(piece_bytes(tokenizer, i) for i in do) == b" do"
    assert b"".join(piece_bytes(tokenizer, i) for i in nt) == b"n't"


@pytest.mark.parametrize("text", TEXTS + ODD_TEXTS)
def test_encoding_in_a_doc_equals_encoding_alone(tokenizer, nlp, text):
    doc = nlp(text)
    in_doc = split_pieces(PieceEncoder(tokenizer).encode_doc(doc))
    for token, spaced, ids in zip(doc, space_before(doc), in_doc):
        # A fresh encoder each time, so that no cache entry is shared.
        alone = PieceEncoder(tokenizer).encode_tokens([token.text], [spaced])
        assert alone.ids.tolist() == ids.tolist()
        assert alone.lengths.tolist() == [len(ids)]


@pytest.mark.parametrize("name", ["sp_legacy_tokenizer", "sp_metaspace_tokenizer"])
def test_sentencepiece_no_space_piece_without_a_space(request, nlp, name):
    tokenizer = request.getfixturevalue(name)
    doc = nlp("Hello, world. New York's (big) city!")
    pieces = split_pieces(PieceEncoder(tokenizer).encode_doc(doc))
    for token, spaced, ids in zip(doc, space_before(doc), pieces):
        tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
        # No dummy prefix at the doc's start or after punctuation; one marker after a space.
        assert tokens[0].startswith("\u2581") == spaced, (token.text, tokens)
        assert sum(t.count("\u2581") for t in tokens) == int(spaced)
    comma = tokenizer.convert_ids_to_tokens(pieces[1].tolist())
    assert comma == [","]


def test_byte_level_space_marker(byte_level_tokenizer):
    encoder = PieceEncoder(byte_level_tokenizer)
    names = byte_level_tokenizer.convert_ids_to_tokens
    assert names(encoder.encode_tokens(["world"], [True]).ids.tolist()) == ["\u0120world"]
    assert names(encoder.encode_tokens([","], [False]).ids.tolist()) == [","]


def test_no_special_tokens_are_added(tokenizer, nlp):
    encoder = PieceEncoder(tokenizer)
    pieces = encoder.encode_doc(nlp("Hello world"))
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id}
    assert not special & set(pieces.ids.tolist())
    # Text that spells a special token is encoded as text, not as the control token.
    spelled = encoder.encode_tokens([tokenizer.bos_token, tokenizer.eos_token], [False, True])
    assert not special & set(spelled.ids.tolist())
    # The caller's tokenizer is left as it was.
    assert tokenizer.backend_tokenizer.encode_special_tokens is False
    assert tokenizer(tokenizer.bos_token, add_special_tokens=False)["input_ids"] == [tokenizer.bos_token_id]


def test_empty_doc(tokenizer, nlp):
    encoder = PieceEncoder(tokenizer)
    for pieces in [encoder.encode_doc(nlp("")), encoder.encode_tokens([], [])]:
        assert pieces.ids.shape == (0,) and pieces.ids.dtype == numpy.int64
        assert pieces.lengths.shape == (0,) and pieces.lengths.dtype == numpy.int32
    assert encoder.encode_docs([]) == []


@pytest.mark.parametrize(
    "name",
    [
        "byte_level_tokenizer",
        "sp_legacy_tokenizer",
        "sp_metaspace_tokenizer",
        "stripping_tokenizer",
        "stripping_tokenizer_with_unk",
    ],
)
def test_odd_text_gives_every_token_a_piece(request, nlp, name):
    tokenizer = request.getfixturevalue(name)
    encoder = PieceEncoder(tokenizer)
    docs = [nlp(text) for text in ODD_TEXTS]
    for doc, pieces in zip(docs, encoder.encode_docs(docs)):
        assert_well_formed(pieces, len(doc))


@pytest.mark.parametrize("name", ["byte_level_tokenizer", "sp_legacy_tokenizer"])
def test_long_token(request, name):
    tokenizer = request.getfixturevalue(name)
    encoder = PieceEncoder(tokenizer)
    words = ["a" * 3000, "xq7" * 1000, "\u00e9" * 3000]
    pieces = encoder.encode_tokens(words, [False, True, True])
    assert_well_formed(pieces, 3)
    decoded = [b"".join(piece_bytes(tokenizer, i) for i in ids).decode("utf-8") for ids in split_pieces(pieces)]
    assert decoded == [words[0], " " + words[1], " " + words[2]]


def test_token_that_encodes_to_nothing_gets_unk(stripping_tokenizer_with_unk):
    tokenizer = stripping_tokenizer_with_unk
    encoder = PieceEncoder(tokenizer)
    pieces = encoder.encode_tokens(["a", "\x00", "\u200b\u200d", "b"], [False, False, False, True])
    assert pieces.lengths.tolist()[1:3] == [1, 1]
    assert pieces.ids.tolist()[1:3] == [tokenizer.unk_token_id] * 2
    # With a space before it, the token keeps its space piece and needs no stand-in.
    spaced = encoder.encode_tokens(["\x00"], [True])
    assert tokenizer.convert_ids_to_tokens(spaced.ids.tolist()) == ["\u0120"]


def test_token_that_encodes_to_nothing_without_unk(stripping_tokenizer):
    tokenizer = stripping_tokenizer
    assert tokenizer.unk_token_id is None
    encoder = PieceEncoder(tokenizer)
    replacement = b"".join(piece_bytes(tokenizer, i) for i in encoder.empty_ids)
    assert replacement.decode("utf-8") == "\ufffd"
    pieces = encoder.encode_tokens(["\x00"], [False])
    assert pieces.ids.tolist() == list(encoder.empty_ids)
    assert pieces.lengths.tolist() == [len(encoder.empty_ids)]


def test_no_stand_in_at_all_raises(byte_level_tokenizer):
    backend = Tokenizer.from_str(byte_level_tokenizer.backend_tokenizer.to_str())
    backend.normalizer = normalizers.Replace(Regex("[^a-z]"), "")
    encoder = PieceEncoder(backend)
    assert encoder.empty_ids is None
    assert encoder.encode_tokens(["abc"], [False]).lengths.tolist() == [len("abc") - 1]
    with pytest.raises(ValueError, match=r"\[E043\]"):
        encoder.encode_tokens(["abc", "!"], [False, False])


def test_raw_tokenizer_settings_are_ignored_and_kept(byte_level_tokenizer):
    backend = Tokenizer.from_str(byte_level_tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=4)
    backend.enable_padding(length=16, pad_id=0)
    encoder = PieceEncoder(backend)
    pieces = encoder.encode_tokens(["a" * 100], [False])
    assert len(pieces.ids) > 4 and 0 not in pieces.ids.tolist()
    assert backend.truncation is not None and backend.padding is not None
    assert backend.encode_special_tokens is False


def test_encode_docs_equals_encode_doc(tokenizer, nlp):
    docs = [nlp(text) for text in TEXTS + ODD_TEXTS] + [nlp("")]
    batched = PieceEncoder(tokenizer).encode_docs(iter(docs))
    single = PieceEncoder(tokenizer)
    assert len(batched) == len(docs)
    for doc, pieces in zip(docs, batched):
        expected = single.encode_doc(doc)
        assert pieces.ids.tolist() == expected.ids.tolist()
        assert pieces.lengths.tolist() == expected.lengths.tolist()


class _CountingBackend:
    def __init__(self, backend):
        self.backend = backend
        self.calls = []

    def encode_batch_fast(self, texts, **kwargs):
        self.calls.append(len(texts))
        return self.backend.encode_batch_fast(texts, **kwargs)


def test_cache_misses_are_encoded_in_one_call(byte_level_tokenizer, nlp):
    encoder = PieceEncoder(byte_level_tokenizer)
    counting = encoder._backend = _CountingBackend(encoder._backend)
    docs = [nlp(text) for text in TEXTS]
    first = encoder.encode_docs(docs)
    distinct = {(sb, t.text) for doc in docs for sb, t in zip(space_before(doc), doc)}
    assert counting.calls == [len(distinct)]
    second = encoder.encode_docs(docs)
    assert counting.calls == [len(distinct)]
    assert [p.ids.tolist() for p in first] == [p.ids.tolist() for p in second]


@pytest.mark.parametrize("cache_size", [0, 1, 3])
def test_cache_is_bounded(byte_level_tokenizer, nlp, cache_size):
    encoder = PieceEncoder(byte_level_tokenizer, cache_size=cache_size)
    unbounded = PieceEncoder(byte_level_tokenizer)
    docs = [nlp(text) for text in TEXTS]
    for _ in range(2):
        for doc, pieces in zip(docs, encoder.encode_docs(docs)):
            assert pieces.ids.tolist() == unbounded.encode_doc(doc).ids.tolist()
        assert len(encoder._cache) <= cache_size


def test_bad_arguments(byte_level_tokenizer):
    with pytest.raises(TypeError, match=r"\[E018\]"):
        PieceEncoder(object())
    with pytest.raises(ValueError, match=r"\[E040\]"):
        PieceEncoder(byte_level_tokenizer, cache_size=-1)
    with pytest.raises(ValueError, match=r"\[E042\]"):
        PieceEncoder(byte_level_tokenizer).encode_tokens(["a", "b"], [False])


# Letters, digits, punctuation, spaces, newlines, controls, combining marks, zero-width,
# CJK, RTL and emoji.
_CHARS = st.sampled_from(list("ab Z7é.,'-\n\t") + ["\x00", "\x1b", "\u0301", "\u200d", "\u200b", "日", "ש", "👩", "😀"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=_CHARS, max_size=40))
def test_random_text(tokenizer, nlp, text):
    doc = nlp(text)
    encoder = PieceEncoder(tokenizer)
    pieces = encoder.encode_doc(doc)
    assert_well_formed(pieces, len(doc))
    assert_reproduces_text(tokenizer, doc, pieces)
    for token, spaced, ids in zip(doc, space_before(doc), split_pieces(pieces)):
        alone = PieceEncoder(tokenizer).encode_tokens([token.text], [spaced])
        assert alone.ids.tolist() == ids.tolist()
