"""The Hugging Face and torch side; it imports neither spaCy nor thinc.

A Doc's tokens become pieces (``pieces``), the pieces become windows (``windows``), short
windows share rows (``packed_rows``) that attention keeps apart (``packed_attention``), and
the decoder turns them into vectors: loaded (``load``, ``tokenizer``), partly unmasked
(``unmask``, measured by ``probe``), with LoRA adapters (``lora``) and their own optimizer
(``adapter_optimizer``), all held for the pipeline by ``backbone``.
"""

from .load import load_decoder
from .lora import add_lora
from .probe import bidirectional_layers
from .unmask import UnmaskHandle, parse_spec, unmask_layers

__all__ = [
    "UnmaskHandle",
    "add_lora",
    "bidirectional_layers",
    "load_decoder",
    "parse_spec",
    "unmask_layers",
]
