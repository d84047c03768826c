"""The Hugging Face and torch side; it imports neither spaCy nor thinc.

A Doc's tokens become pieces (``pieces``), the pieces become windows (``windows``), short
windows share rows (``packed_rows``) that attention keeps apart (``packed_attention``), and
the decoder turns them into vectors: loaded (``load``, ``tokenizer``), partly unmasked
(``unmask``, measured by ``probe``), with LoRA adapters (``lora``) and their own optimizer
(``adapter_optimizer``), all held for the pipeline by ``backbone``.
"""

# Re-exported as the package's public API (spacy_cmllm/__init__.py lists it).
from .load import load_decoder as load_decoder
from .lora import add_lora as add_lora
from .probe import bidirectional_layers as bidirectional_layers
from .unmask import UnmaskHandle as UnmaskHandle
from .unmask import parse_spec as parse_spec
from .unmask import unmask_layers as unmask_layers
