"""spacy-cmllm: decoder LLMs with layer-wise causal-mask removal as spaCy sequence labellers.

Public API (Hugging Face side):
    load_decoder(source, *, dtype, quantization, attn_implementation) -> (model, tokenizer)
    unmask_layers(model, spec) -> UnmaskHandle          spec "0011" or [16, 17, ...]
    bidirectional_layers(model) -> List[bool]            measured, not configured
    add_lora(model, *, r, alpha, dropout, target_modules) -> PeftModel

spaCy side: the architecture "spacy-cmllm.CausalMaskLLM.v1" and the scorer
"spacy-cmllm.seqeval_scorer.v1", registered on import and through entry points.
"""

from .decoder.load import load_decoder
from .decoder.lora import add_lora
from .decoder.probe import bidirectional_layers
from .decoder.unmask import UnmaskHandle, parse_spec, unmask_layers
from .pipeline import architectures  # noqa: F401  (registers the spaCy functions)

__version__ = "0.1.0"

__all__ = [
    "UnmaskHandle",
    "add_lora",
    "bidirectional_layers",
    "load_decoder",
    "parse_spec",
    "unmask_layers",
]
