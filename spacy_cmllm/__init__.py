"""spacy-cmllm: decoder LLMs with layer-wise causal-mask removal as spaCy sequence labellers.

Public API (Hugging Face side; importing it imports neither spaCy nor thinc):
    load_decoder(source, *, dtype, quantization, attn_implementation) -> (model, tokenizer)
    unmask_layers(model, spec) -> UnmaskHandle          spec "0011" or [16, 17, ...]
    bidirectional_layers(model) -> List[bool]            measured, not configured
    add_lora(model, *, r, alpha, dropout, target_modules) -> PeftModel

spaCy side (``spacy_cmllm.pipeline``): the architectures such as
"spacy-cmllm.CausalMaskLLM.v4", the ``bio_tagger`` factory and the scorers, which spaCy
finds through the entry points in setup.cfg when a config names them.
"""

from .decoder import UnmaskHandle, add_lora, bidirectional_layers, load_decoder, parse_spec, unmask_layers

__version__ = "0.1.0"

__all__ = [
    "UnmaskHandle",
    "add_lora",
    "bidirectional_layers",
    "load_decoder",
    "parse_spec",
    "unmask_layers",
]
