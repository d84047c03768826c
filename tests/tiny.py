"""Tiny random decoders built in-process, the models of the unit tests."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM


def tiny_decoder(
    family: str = "llama",
    *,
    n_layers: int = 8,
    attn: str = "sdpa",
    sliding_window=None,
    vocab_size: int = 128,
    hidden_size: int = 64,
    seed: int = 0,
):
    """A randomly initialised *ForCausalLM with the real architecture, in eval mode."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "mistral":
        model = MistralForCausalLM(MistralConfig(sliding_window=sliding_window, **common))
    else:
        raise ValueError(family)
    return model.eval()
