"""Registered, versioned builders: the only module that touches spaCy's registry.

A published version's signature never changes; a new behaviour gets a new version.
"""

from typing import Any, Dict, List, Optional, Union

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import FullTransformerBatch
from thinc.api import Model

from ..errors import CmllmError, Errors
from .backbone import BackboneSettings
from .model import build_model

DEFAULT_LORA: Dict[str, Any] = {
    "r": 16,
    "alpha": 32.0,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


@registry.architectures("spacy-cmllm.CausalMaskLLM.v1")
def build_causal_mask_llm_v1(
    *,
    name: str,
    # int is accepted only to explain E005: a CLI override turns "0011" into 11.
    unmask: Union[str, List[int], int] = "0000",
    dtype: str = "float32",
    quantization: Optional[str] = None,
    attn_implementation: str = "sdpa",
    lora: Optional[Dict[str, Any]] = DEFAULT_LORA,
    window: int = 128,
    stride: int = 96,
    hidden_layers: List[int] = [-1],
    add_bos: bool = True,
    max_batch_pieces: int = 4096,
    mixed_precision: Optional[bool] = None,
    device: Optional[str] = None,
    gradient_checkpointing: bool = False,
    embed_base: bool = False,
) -> Model[List[Doc], FullTransformerBatch]:
    """A partly unmasked, LoRA-adapted decoder as the model of spacy-transformers'
    ``transformer`` component; ``TransformerListener.v1`` layers read its output.

    name (str): the base decoder: hub name, local directory, .gguf file, or
        "package:<module>/<file>" for a model shipped inside a Python package.
    unmask (str | List[int]): group string, leftmost = input side ("0011"), or layer indices.
    dtype (str): "float32", "bfloat16" or "float16" for the base weights.
    quantization (Optional[str]): None or "4bit" (QLoRA; CUDA and bitsandbytes).
    attn_implementation (str): "sdpa" or "eager".
    lora (Optional[Dict]): r, alpha, dropout, target_modules; null freezes the decoder.
    window (int): pieces per window over long documents (BOS excluded).
    stride (int): pieces between window starts; each piece's vector is read from the
        window in which it has the most context on both sides.
    hidden_layers (List[int]): which hidden states feed the listeners, as indices into
        (embeddings, layer 1, ..., last layer with final norm); several are averaged.
        [-1] is the final output.
    add_bos (bool): start every window with the BOS token, an attention sink never labelled.
    max_batch_pieces (int): bound on padded pieces per decoder call; keeps memory flat.
    mixed_precision (Optional[bool]): bfloat16 autocast around the decoder; null = where
        the hardware has native bf16 (CUDA with bf16, CPUs with AVX512-BF16 or AMX).
    device (Optional[str]): torch device of the decoder; default CUDA when available.
    gradient_checkpointing (bool): trade compute for activation memory in training.
    embed_base (bool): save the base weights inside the pipeline (small models only).
    """
    for key, value, minimum in (("window", window, 1), ("stride", stride, 1), ("max_batch_pieces", max_batch_pieces, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CmllmError(Errors.E040.format(name=key, value=value, why=f"must be an integer >= {minimum}"))
    if stride > window:
        raise CmllmError(Errors.E040.format(name="stride", value=stride, why=f"must not exceed window={window}, or pieces would be skipped"))
    if not hidden_layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in hidden_layers):
        raise CmllmError(Errors.E040.format(name="hidden_layers", value=hidden_layers, why="give a non-empty list of integers, e.g. [-1]"))
    settings = BackboneSettings.from_dict(
        {
            "name": name,
            "unmask": unmask,
            "dtype": dtype,
            "quantization": quantization,
            "attn_implementation": attn_implementation,
            "lora": lora,
            "device": device,
            "gradient_checkpointing": gradient_checkpointing,
            "embed_base": embed_base,
        }
    )
    return build_model(
        settings,
        window=window,
        stride=stride,
        hidden_layers=hidden_layers,
        add_bos=add_bos,
        max_batch_pieces=max_batch_pieces,
        mixed_precision=mixed_precision,
    )


@registry.scorers("spacy-cmllm.seqeval_scorer.v1")
def make_seqeval_scorer_v1():
    """spaCy's entity scores plus the paper's metric: seqeval, strict IOB2, micro P/R/F."""
    from .scorer import score_entities

    return score_entities
