"""Decoders of published shapes with random weights, built directly on the device and
registered as ``memory:<name>`` sources: Llama-2-7B and Mistral-7B for the 7B stages, and
SmolLM2-135M for --random-weights (the stages whose numbers do not depend on the weights'
values then run without the model file); the same families at unit-test size for
--cpu-dry-run."""

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Llama-2-7B and Mistral-7B as their config.json files give them. The vocabulary is the
# tokenizer's (see random_decoder_source); everything else is the published shape.
SHAPES: dict[str, dict[str, Any]] = {
    "llama2_7b": dict(
        family="llama",
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        vocab_size=32000,
    ),
    "mistral_7b": dict(
        family="mistral",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        sliding_window=4096,
        vocab_size=32000,
    ),
}
# SmolLM2-135M's shape (as its GGUF gives it), for --random-weights: the stages whose numbers
# do not depend on the weights' values run without the model file.
SHAPES["smollm2_135m"] = dict(
    family="llama",
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    vocab_size=49152,
)
# The same families at unit-test size, for --cpu-dry-run (GQA and the window kept).
TINY_SHAPES: dict[str, dict[str, Any]] = {
    "llama2_7b": dict(
        SHAPES["llama2_7b"],
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    ),
    "mistral_7b": dict(
        SHAPES["mistral_7b"],
        hidden_size=64,
        intermediate_size=224,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=512,
        sliding_window=16,
    ),
}
TINY_SHAPES["smollm2_135m"] = dict(
    SHAPES["smollm2_135m"],
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)


def random_decoder_source(name: str, shape: dict[str, Any], tokenizer: Any, device: torch.device) -> str:
    """Register ``memory:<name>``: the shape with random weights, built directly on `device`
    in the dtype asked for, with `tokenizer`. The vocabulary is the tokenizer's (SmolLM2's
    49,152 for the 7B shapes, against their 32,000): its ids must index the embedding, and
    the extra 17,152 rows are 1 % of the parameters and cost nothing per token (a lookup;
    no LM head is built)."""
    from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, MistralConfig

    from spacy_cmllm.decoder.load import DTYPES, register_memory_source

    settings = {k: v for k, v in shape.items() if k != "family"}
    settings["vocab_size"] = len(tokenizer)
    config_class = MistralConfig if shape["family"] == "mistral" else LlamaConfig

    def build(*, dtype: str, quantization: str | None, attn_implementation: str, lm_head: bool):
        config = config_class(
            **settings,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation=attn_implementation,
        )
        torch.manual_seed(0)
        with torch.device(device):
            model = (AutoModelForCausalLM if lm_head else AutoModel).from_config(config, torch_dtype=DTYPES[dtype])
        if quantization == "4bit":
            quantize_nf4(model)
        return model, tokenizer

    register_memory_source(name, build)
    return f"memory:{name}"


def quantize_nf4(model: "PreTrainedModel") -> int:
    """Replace the decoder layers' linear layers by bitsandbytes NF4 ones (double
    quantisation, bf16 compute), as load_in_4bit does when loading a checkpoint. Returns how
    many were replaced."""
    import bitsandbytes as bnb
    from transformers import BitsAndBytesConfig

    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            device = child.weight.device
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            # Params4bit quantizes on its first move to a CUDA device, wherever it starts.
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            ).to(device)
            if child.bias is not None:
                quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, quantized)
            replaced += 1
    # What peft's prepare_model_for_kbit_training and LoRA dispatch look for (a plain flag,
    # where nn.Module types every attribute set on it as a tensor or a module).
    model.is_loaded_in_4bit = True  # type: ignore[assignment]
    model.config.quantization_config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return replaced


def load_saved_tokenizer(path: Any) -> Any:
    """A tokenizer written by save_pretrained (e.g. `gpu_check.py --save-tokenizer`), repaired
    for labelling as load_decoder repairs every tokenizer."""
    from transformers import AutoTokenizer

    from spacy_cmllm.decoder.tokenizer import repair_tokenizer

    return repair_tokenizer(AutoTokenizer.from_pretrained(path))
