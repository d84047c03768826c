"""Tokens (a spaCy Doc's, or any with ``text`` and ``whitespace_``) → tokenizer pieces,
aligned by construction.

Every spaCy token is encoded on its own, as it appears in running text: preceded by a space
when the previous token has trailing whitespace. The pieces of a doc are the concatenation of
its tokens' pieces, so each piece belongs to exactly one token. Aligning the pieces of the whole
text by character offsets instead can hand a word-initial piece that carries the preceding space
to two tokens.

A string's start is special to many tokenizers: SentencePiece-style ones (Llama-2, Mistral) add a
dummy "▁" prefix there, so "," alone would become "▁,". To encode a token as it looks in the
middle of a text, an anchor string is encoded in front of it and the anchor's own pieces are
removed again. If the anchor's pieces are not a prefix of the result (the anchor merged with the
token), the token is encoded alone instead.
"""

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Protocol, Union

import numpy
from tokenizers import Tokenizer

from ..errors import CmllmError, CmllmTypeError, Errors

if TYPE_CHECKING:
    from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

# A newline is a pre-token of its own under GPT-2-style byte-level pre-tokenizer regexes, and
# SentencePiece vocabularies have no merges from a newline into a following word or punctuation.
_ANCHOR = "\n"
# A newline does merge with a token that starts with whitespace itself (spaCy makes tokens of
# extra spaces and newlines), so those get a letter in front instead.
_SPACE_ANCHOR = "a"
# What stands in for a token that encodes to nothing when the tokenizer has no unk token: the
# replacement character first, then a space (the first of these that yields pieces).
_EMPTY_FALLBACKS = ("\ufffd", " ")

# A token as it is encoded: (whether a space precedes it, its text).
_Key = tuple[bool, str]


class Token(Protocol):
    """What the encoder reads of a token: a spaCy Token has both, and nothing here needs spaCy.
    Read-only, as spaCy's are."""

    @property
    def text(self) -> str: ...

    @property
    def whitespace_(self) -> str: ...


@dataclass(eq=False)
class TokenPieces:
    """The pieces of a sequence of tokens.

    ids (numpy.ndarray): int64, the piece ids of all tokens in order.
    lengths (numpy.ndarray): int32, the number of pieces of each token; every entry is at least
        1 and the entries sum to len(ids).
    """

    ids: numpy.ndarray
    lengths: numpy.ndarray


class PieceEncoder:
    """Encode spaCy tokens into tokenizer pieces, one token at a time.

    No special tokens (BOS, EOS) are added, and the tokenizer's own truncation and padding
    settings are ignored. Text that spells a special token (e.g. "<s>" or "<|endoftext|>")
    is encoded as ordinary text, so a document cannot inject control tokens. A token that
    encodes to nothing (tokenizers can drop NUL, control or zero-width characters) gets one
    piece: the unk token, or, for tokenizers without one, the pieces of U+FFFD (else of a
    space).

    Encodings are cached per (space before, text), and the cache misses of a whole batch of
    docs are encoded in one tokenizer call.
    """

    def __init__(
        self,
        tokenizer: Union["PreTrainedTokenizerFast", Tokenizer],
        *,
        cache_size: int = 65536,
    ) -> None:
        """Build an encoder around a fast tokenizer.

        tokenizer (PreTrainedTokenizerFast | tokenizers.Tokenizer): the model's tokenizer. It is
            copied, not modified.
        cache_size (int): how many distinct (space before, text) encodings to keep; 0 turns
            the cache off.
        """
        if isinstance(tokenizer, Tokenizer):
            backend = tokenizer
            unk_token = getattr(tokenizer.model, "unk_token", None)
            unk_id = tokenizer.token_to_id(unk_token) if unk_token is not None else None
        elif isinstance(getattr(tokenizer, "backend_tokenizer", None), Tokenizer):
            backend = tokenizer.backend_tokenizer
            unk_id = tokenizer.unk_token_id
        else:
            raise CmllmTypeError(Errors.E018.format(cls=type(tokenizer).__name__))
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise CmllmError(Errors.E040.format(name="cache_size", value=cache_size, why="must be an int >= 0"))
        # A copy, so that the caller's tokenizer keeps its settings while ours ignore
        # truncation/padding (a hub tokenizer.json may set either) and split special tokens.
        self._backend = Tokenizer.from_str(backend.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self._backend.encode_special_tokens = True
        self._anchor_ids = {
            anchor: self._backend.encode(anchor, add_special_tokens=False).ids for anchor in (_ANCHOR, _SPACE_ANCHOR)
        }
        self._cache_size = cache_size
        self._cache: OrderedDict[_Key, tuple[int, ...]] = OrderedDict()
        self._empty_ids: tuple[int, ...] | None = None
        if unk_id is not None:
            self._empty_ids = (unk_id,)
        else:
            for text in _EMPTY_FALLBACKS:
                ids = self._encode_raw([(False, text)])[(False, text)]
                if ids:
                    self._empty_ids = ids
                    break

    @property
    def empty_ids(self) -> tuple[int, ...] | None:
        """The pieces given to a token that encodes to nothing (None: the tokenizer has none)."""
        return self._empty_ids

    def encode_tokens(self, words: Sequence[str], space_before: Sequence[bool]) -> TokenPieces:
        """Encode one sequence of tokens.

        words (Sequence[str]): the token texts.
        space_before (Sequence[bool]): for each token, whether a space precedes it.
        RETURNS (TokenPieces): the pieces, with one length per token.
        """
        if len(words) != len(space_before):
            raise CmllmError(Errors.E042.format(n_words=len(words), n_spaces=len(space_before)))
        keys = [(bool(space), word) for space, word in zip(space_before, words)]
        return self._encode_key_lists([keys])[0]

    def encode_doc(self, doc: Iterable[Token]) -> TokenPieces:
        """Encode the tokens of one doc.

        doc (Iterable[Token]): a spaCy Doc, or any tokens; token i is preceded by a space iff
            token i-1 has trailing whitespace.
        RETURNS (TokenPieces): the pieces, with one length per token.
        """
        return self._encode_key_lists([_doc_keys(doc)])[0]

    def encode_docs(self, docs: Iterable[Iterable[Token]]) -> list[TokenPieces]:
        """Encode the tokens of several docs, with one tokenizer call for all cache misses.

        docs (Iterable[Iterable[Token]]): the docs.
        RETURNS (List[TokenPieces]): the pieces of each doc, in order.
        """
        return self._encode_key_lists([_doc_keys(doc) for doc in docs])

    def _encode_key_lists(self, key_lists: Sequence[Sequence[_Key]]) -> list[TokenPieces]:
        # A local table rather than cache lookups at assembly time: a batch with more distinct
        # tokens than the cache holds would otherwise evict its own entries.
        table: dict[_Key, tuple[int, ...]] = {}
        missing: list[_Key] = []
        for key in dict.fromkeys(chain.from_iterable(key_lists)):
            ids = self._cache.get(key)
            if ids is None:
                missing.append(key)
            else:
                self._cache.move_to_end(key)
                table[key] = ids
        if missing:
            fresh = self._encode_raw(missing)
            for key, ids in fresh.items():
                if not ids:
                    if self._empty_ids is None:
                        raise CmllmError(Errors.E043.format(text=key[1]))
                    ids = self._empty_ids
                table[key] = ids
                self._remember(key, ids)
        return [_assemble(keys, table) for keys in key_lists]

    def _encode_raw(self, keys: Sequence[_Key]) -> dict[_Key, tuple[int, ...]]:
        """Encode tokens as in running text; the result may be empty."""
        anchors = [_SPACE_ANCHOR if text[:1].isspace() else _ANCHOR for _, text in keys]
        texts = [anchor + _with_space(key) for anchor, key in zip(anchors, keys)]
        encodings = self._backend.encode_batch_fast(texts, add_special_tokens=False)
        out: dict[_Key, tuple[int, ...]] = {}
        alone: list[_Key] = []
        for key, anchor, encoding in zip(keys, anchors, encodings):
            prefix = self._anchor_ids[anchor]
            ids = encoding.ids
            if ids[: len(prefix)] == prefix:
                out[key] = tuple(ids[len(prefix) :])
            else:
                alone.append(key)
        if alone:
            texts = [_with_space(key) for key in alone]
            encodings = self._backend.encode_batch_fast(texts, add_special_tokens=False)
            for key, encoding in zip(alone, encodings):
                out[key] = tuple(encoding.ids)
        return out

    def _remember(self, key: _Key, ids: tuple[int, ...]) -> None:
        if self._cache_size == 0:
            return
        self._cache[key] = ids
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _doc_keys(doc: Iterable[Token]) -> list[_Key]:
    keys: list[_Key] = []
    space = False
    for token in doc:
        keys.append((space, token.text))
        space = token.whitespace_ != ""
    return keys


def _with_space(key: _Key) -> str:
    space, text = key
    return " " + text if space else text


def _assemble(keys: Sequence[_Key], table: dict[_Key, tuple[int, ...]]) -> TokenPieces:
    pieces = [table[key] for key in keys]
    lengths = numpy.fromiter(map(len, pieces), dtype=numpy.int32, count=len(pieces))
    ids = numpy.fromiter(chain.from_iterable(pieces), dtype=numpy.int64, count=int(lengths.sum()))
    return TokenPieces(ids=ids, lengths=lengths)
