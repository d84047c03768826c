"""Small tokenizers of the two families decoder LLMs use, trained in-process (no hub access).

- byte-level BPE (GPT-2 / SmolLM2 / Llama-3 style): 'Ġ' marks a space, every byte is a piece;
- SentencePiece-style BPE (Llama-2 / Mistral style): '▁' marks a space, a dummy '▁' prefix at
  the start of each string, an unk token and byte fallback (<0x00>..<0xFF>), and a post-processor
  that adds a BOS, as LlamaTokenizerFast sets up.
"""

import json

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast, LlamaTokenizerFast

CORPUS = """\
The quick brown fox jumps over the lazy dog. Don't stop now, world! Hello world, hello there.
New York is a city in the United States of America, and London is the capital of England.

John's book costs $3.50 (about 3 euros). She said: "I can't do it, and I won't try again."
On 2024-01-01 the e-mail arrived at 09:30; nobody read it until Monday morning.

Researchers at the university trained language models on news articles, books and web pages.
The model reads every sentence from left to right, one piece at a time, and predicts the next.

Named entities such as people, organisations and locations are tagged in the CoNLL corpus.
Tokens that repeat often become single pieces, while rare words are split into several parts.

Mr. Smith went to Washington on Tuesday. Dr. Jones didn't agree with the committee's report.
Prices rose by 4.5% in the third quarter, according to the central bank's latest figures.

"What's the weather like?" asked Mary. "It's raining," replied Tom, "so take an umbrella."
The team won 3-1 against their rivals, and the fans celebrated in the streets all night long.

Some text is indented:
    def tag(doc):
        for token in doc:
            yield token.text,  token.tag_

"""


def _train_byte_level(*, unk: bool, normalizer=None) -> GPT2TokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS], trainer=trainer)
    special = "<|endoftext|>"
    return GPT2TokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=special,
        eos_token=special,
        unk_token=special if unk else None,
    )


def _train_sentencepiece(*, legacy: bool) -> LlamaTokenizerFast:
    # Train on words marked with '▁' so that the vocabulary has word-initial pieces such as
    # '▁world', as SentencePiece vocabularies do.
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    trainer_tokenizer.train_from_iterator([CORPUS], trainer=trainer)
    model = json.loads(trainer_tokenizer.to_str())["model"]
    vocab = dict(model["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if legacy:
        # The layout of the Llama-2 / Mistral tokenizer.json files on the hub.
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        # The layout transformers writes when converting with legacy=False.
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    return LlamaTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=True,
        legacy=legacy,
    )


@pytest.fixture(scope="session")
def byte_level_tokenizer() -> GPT2TokenizerFast:
    return _train_byte_level(unk=True)


@pytest.fixture(scope="session")
def sp_legacy_tokenizer() -> LlamaTokenizerFast:
    return _train_sentencepiece(legacy=True)


@pytest.fixture(scope="session")
def sp_metaspace_tokenizer() -> LlamaTokenizerFast:
    return _train_sentencepiece(legacy=False)


# Drops NUL, other control characters (but not tab, newline, carriage return) and zero-width
# characters, as some tokenizers' normalizers do, so that some tokens encode to nothing.
_DROP_CONTROLS = normalizers.Replace(Regex("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\u200b-\\u200d]"), "")


@pytest.fixture(scope="session")
def stripping_tokenizer() -> GPT2TokenizerFast:
    """Byte-level with a normalizer that drops control characters, and no unk token."""
    return _train_byte_level(unk=False, normalizer=_DROP_CONTROLS)


@pytest.fixture(scope="session")
def stripping_tokenizer_with_unk() -> GPT2TokenizerFast:
    """Byte-level with a normalizer that drops control characters, and an unk token."""
    return _train_byte_level(unk=True, normalizer=_DROP_CONTROLS)


@pytest.fixture(scope="session", params=["byte_level", "sp_legacy", "sp_metaspace"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")
