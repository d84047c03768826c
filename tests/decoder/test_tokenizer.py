"""repair_tokenizer: GGUF byte-level BPE rebuilt, other tokenizers only padded."""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    LlamaConfig,
    LlamaTokenizerFast,
)

from spacy_cmllm.decoder.tokenizer import read_gguf_metadata, repair_tokenizer

from .conftest import SENTENCES, TINY_CONTEXT

WORDS = ["He", " rejects", " it", "."]


def _gguf_tokenizer(path):
    """The tokenizer exactly as transformers builds it from a GGUF file."""
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _gpt2(backend: Tokenizer, **specials) -> GPT2TokenizerFast:
    return GPT2TokenizerFast(tokenizer_object=backend, **specials)


def _assert_labelling_ready(tokenizer, text="He rejects it."):
    """The properties the labelling pipeline relies on, for a byte-level BPE."""
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token is not None
    encoding = tokenizer(text, return_offsets_mapping=True)
    assert tokenizer.bos_token_id not in encoding["input_ids"]
    for (start, end), piece in zip(encoding["offset_mapping"], encoding.input_ids):
        assert not text[start:end].startswith(" "), (piece, start, end)
    # A word given with its leading space is one piece, the same as inside the sentence.
    alone = tokenizer(" rejects", add_special_tokens=True)["input_ids"]
    assert len(alone) == 1
    assert alone[0] in tokenizer(text)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(alone) == ["Ġrejects"]
    one_by_one = tokenizer(WORDS)["input_ids"]
    assert sum(one_by_one, []) == tokenizer("".join(WORDS))["input_ids"]
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.fixture(scope="module")
def gguf_metadata(tiny_gguf):
    return read_gguf_metadata(tiny_gguf)


def test_read_gguf_metadata_keeps_scalars_and_drops_vocabulary(gguf_metadata):
    assert gguf_metadata["general.architecture"] == "llama"
    assert gguf_metadata["tokenizer.ggml.model"] == "gpt2"
    assert gguf_metadata["tokenizer.ggml.eos_token_id"] == 2
    assert gguf_metadata["tokenizer.ggml.add_bos_token"] is False
    assert gguf_metadata["llama.context_length"] == TINY_CONTEXT
    assert "tokenizer.ggml.tokens" not in gguf_metadata
    assert "tokenizer.ggml.merges" not in gguf_metadata


def test_gguf_byte_level_tokenizer_is_rebuilt(tiny_gguf, gguf_metadata):
    original = _gguf_tokenizer(tiny_gguf)
    repaired = repair_tokenizer(original, gguf_metadata=gguf_metadata)

    assert isinstance(repaired, GPT2TokenizerFast)
    assert (repaired.bos_token, repaired.eos_token) == ("<s>", "</s>")
    assert (repaired.unk_token, repaired.pad_token) == ("<unk>", "</s>")
    assert repaired.eos_token_id == 2 and repaired.pad_token_id == 2
    assert repaired.model_max_length == TINY_CONTEXT
    _assert_labelling_ready(repaired)
    # Same vocabulary and pieces: only transformers' BOS disappears.
    for text in SENTENCES:
        ids = original(text)["input_ids"]
        if ids[:1] == [original.bos_token_id]:
            ids = ids[1:]
        assert repaired(text)["input_ids"] == ids


def test_repair_is_idempotent_and_survives_save_load(tiny_gguf, gguf_metadata, tmp_path):
    repaired = repair_tokenizer(_gguf_tokenizer(tiny_gguf), gguf_metadata=gguf_metadata)
    again = repair_tokenizer(repaired, gguf_metadata=gguf_metadata)
    assert again is repaired
    repaired.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, GPT2TokenizerFast)
    assert reloaded.pad_token == "</s>" and reloaded.padding_side == "right"
    for text in SENTENCES:
        assert reloaded(text, return_offsets_mapping=True) == repaired(text, return_offsets_mapping=True)


def test_without_metadata_the_config_corrects_eos(tiny_gguf):
    config = LlamaConfig(eos_token_id=2, max_position_embeddings=64)
    repaired = repair_tokenizer(_gguf_tokenizer(tiny_gguf), config=config)
    assert repaired.eos_token == "</s>"
    assert repaired.pad_token == "</s>"
    assert repaired.model_max_length == 64
    _assert_labelling_ready(repaired)


def test_gguf_that_asks_for_bos_keeps_it_with_trimmed_offsets(tiny_gguf, gguf_metadata):
    metadata = dict(gguf_metadata, **{"tokenizer.ggml.add_bos_token": True})
    repaired = repair_tokenizer(_gguf_tokenizer(tiny_gguf), gguf_metadata=metadata)
    encoding = repaired("He rejects it", return_offsets_mapping=True)
    assert encoding["input_ids"][0] == repaired.bos_token_id == 1
    assert encoding["offset_mapping"][2] == (3, 10)


def test_correct_byte_level_tokenizer_is_only_padded(tiny_bpe):
    tokenizer = _gpt2(tiny_bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    before = tokenizer("He rejects it.", return_offsets_mapping=True)
    repaired = repair_tokenizer(tokenizer)
    assert repaired is tokenizer
    assert repaired.pad_token == "</s>"
    assert repaired("He rejects it.", return_offsets_mapping=True) == before
    _assert_labelling_ready(repaired)


def _sentencepiece_llama() -> LlamaTokenizerFast:
    """A Llama-2 style tokenizer: '▁' word marks, BOS template, huge model_max_length."""
    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Train on '▁'-marked words so that merges stay within words, then switch to the
    # normalizer-only layout of the Llama-2 / Mistral tokenizer.json files.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    backend.train_from_iterator(SENTENCES, trainer=trainer)
    backend.pre_tokenizer = None
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return LlamaTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", legacy=True
    )


def test_sentencepiece_tokenizer_keeps_its_bos():
    tokenizer = _sentencepiece_llama()
    before = tokenizer("He rejects it.")["input_ids"]
    assert before[0] == tokenizer.bos_token_id
    repaired = repair_tokenizer(tokenizer, config=LlamaConfig(max_position_embeddings=96))
    assert repaired is tokenizer and isinstance(repaired, LlamaTokenizerFast)
    assert repaired("He rejects it.")["input_ids"] == before
    assert repaired.pad_token == "</s>" and repaired.padding_side == "right"
    assert repaired.model_max_length == 96
    batch = repaired(["He rejects it.", "He"], padding=True)
    assert batch["attention_mask"][1][-1] == 0


def test_sentencepiece_gguf_metadata_fixes_eos_and_bos_flag():
    tokenizer = _sentencepiece_llama()
    tokenizer.eos_token = "<s>"  # what transformers' GGUF conversion of a Llama-2 file yields
    metadata = {"tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": False}
    repaired = repair_tokenizer(tokenizer, gguf_metadata=metadata)
    assert repaired.eos_token == "</s>"
    assert repaired("He")["input_ids"][0] != repaired.bos_token_id


@pytest.mark.parametrize(
    "specials, config, expected",
    [
        ({"pad_token": "<unk>", "eos_token": "</s>"}, None, "<unk>"),  # its own pad wins
        ({"eos_token": "</s>"}, LlamaConfig(pad_token_id=1), "<s>"),  # then the model's
        ({"eos_token": "</s>"}, None, "</s>"),  # then eos
        ({"unk_token": "<unk>"}, None, "<unk>"),  # then unk
    ],
)
def test_pad_token_preference(tiny_bpe, specials, config, expected):
    tokenizer = _gpt2(tiny_bpe, **{"bos_token": None, "eos_token": None, "unk_token": None, **specials})
    repaired = repair_tokenizer(tokenizer, config=config)
    assert repaired.pad_token == expected


def test_no_candidate_for_pad_is_an_error(tiny_bpe):
    tokenizer = _gpt2(tiny_bpe, bos_token=None, eos_token=None, unk_token=None)
    with pytest.raises(ValueError, match=r"\[E019\]"):
        repair_tokenizer(tokenizer)


def test_slow_tokenizer_is_refused(tiny_bpe, tmp_path):
    model = json.loads(tiny_bpe.to_str())["model"]
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    slow = GPT2Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    with pytest.raises(TypeError, match=r"\[E018\]"):
        repair_tokenizer(slow)


@pytest.mark.smollm2
class TestSmolLM2Tokenizer:
    def test_special_tokens(self, smollm2):
        _, tokenizer = smollm2
        assert isinstance(tokenizer, GPT2TokenizerFast)
        assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
        assert tokenizer.bos_token == "<|im_start|>"
        assert tokenizer.unk_token == "<|endoftext|>"
        assert tokenizer.pad_token == "<|im_end|>"
        assert tokenizer.model_max_length == 8192

    def test_labelling_properties(self, smollm2):
        _, tokenizer = smollm2
        _assert_labelling_ready(tokenizer)
        encoding = tokenizer("He rejects it", return_offsets_mapping=True)
        assert encoding["offset_mapping"] == [(0, 2), (3, 10), (11, 13)]
        assert tokenizer(" rejects")["input_ids"] == encoding["input_ids"][1:2]

    def test_words_one_by_one_keep_their_space_piece(self, smollm2):
        _, tokenizer = smollm2
        words = ["The", " capital", " of", " France", " is", " Paris", "."]
        pieces = [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(words)["input_ids"]]
        assert all(p[0].startswith("Ġ") for p in pieces[1:-1])
        assert sum(tokenizer(words)["input_ids"], []) == tokenizer("".join(words))["input_ids"]

    def test_batch_pads_right_with_eos(self, smollm2):
        _, tokenizer = smollm2
        batch = tokenizer(["He rejects it", "He"], padding=True)
        assert batch["input_ids"][1][1:] == [2, 2]
        assert batch["attention_mask"][1] == [1, 0, 0]
