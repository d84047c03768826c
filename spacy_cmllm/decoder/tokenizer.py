"""Make a decoder's tokenizer fit for sequence labelling.

Labelling needs what generation does not: right padding with a real pad token, character
offsets that cover exactly the word (not the space before it), no BOS that the model was not
trained with, and stable pieces when words are encoded one at a time. `repair_tokenizer`
establishes those properties.

Two families are handled differently:

* Byte-level BPE tokenizers that transformers assembles from a GGUF file (SmolLM2, Llama-3
  style). transformers 4.5x wraps such a vocabulary in a `LlamaTokenizerFast` with a
  SentencePiece decoder, a BOS template the GGUF may not ask for, left padding and the BOS
  token as eos. These are rebuilt as a `GPT2TokenizerFast` around the same vocabulary and
  merges, so token ids stay identical to the GGUF's. The pre-tokenizer transformers chose
  (GPT-2's split regex) is kept; it gives SmolLM2's ids, but vocabularies trained with another
  regex (Llama-3, Qwen2) inherit transformers' choice.
* Everything else (SentencePiece `LlamaTokenizerFast` of Llama-2/Mistral, correct GPT-2 style
  tokenizers) keeps its pieces and its BOS behaviour: a Llama-2/Mistral tokenizer still
  prepends `<s>`, which the model was trained with; only the pad token, padding side, wrong
  special tokens (from GGUF metadata) and the maximum length are set. Offsets of
  SentencePiece pieces include their leading "▁" space; that is a property of the format.

Byte-level tokenizers come out with add_prefix_space=False (as the GGUF files declare):
encode words one at a time with their leading space (" world" -> "Ġworld"), not with
is_split_into_words, which GPT2TokenizerFast only allows with add_prefix_space=True. A piece
that is only whitespace ("Ġ" before a double space) gets an empty offset span.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from typing import Any, cast

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from transformers import (
    GPT2TokenizerFast,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

# From its own module: transformers' __init__ shows type checkers its placeholder class (for
# installs without tokenizers) under this name first. The same class at run time.
from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

from ..errors import CmllmError, CmllmTypeError, Errors

__all__ = ["read_gguf_metadata", "repair_tokenizer"]

# transformers uses int(1e30) as "no limit"; anything this large is not a real context size.
_UNBOUNDED_LENGTH = 10**9
# Arrays longer than this (token lists, merges, scores) are not metadata worth keeping.
_MAX_ARRAY_LEN = 64
# Decoder steps that only make sense for SentencePiece pieces ("▁" word marks, <0x..> bytes).
_SENTENCEPIECE_DECODERS = {"ByteFallback", "Replace", "Strip", "Metaspace", "Fuse"}


def read_gguf_metadata(path: str | PathLike[str]) -> dict[str, Any]:
    """Read the key/value metadata of a GGUF file, without its tensors and long arrays.

    Keys are the GGUF ones, e.g. ``"tokenizer.ggml.eos_token_id"`` or
    ``"llama.context_length"``. Needs the ``gguf`` package.
    """
    from gguf import GGUFReader, GGUFValueType

    fields = GGUFReader(str(path), "r").fields
    metadata: dict[str, Any] = {}
    for key, field in fields.items():
        is_array = bool(field.types) and field.types[0] == GGUFValueType.ARRAY
        if is_array and len(field.data) > _MAX_ARRAY_LEN:
            continue
        metadata[key] = _field_value(field, GGUFValueType)
    return metadata


def _field_value(field: Any, value_types: Any) -> Any:
    if hasattr(field, "contents"):
        return field.contents()

    # gguf releases before ReaderField.contents(): decode the parts ourselves.
    def decode(part: Any) -> Any:
        if field.types[-1] == value_types.STRING:
            return bytes(part).decode("utf-8")
        return part.tolist()[0]

    values = [decode(field.parts[index]) for index in field.data]
    return values if field.types[0] == value_types.ARRAY else values[0]


def repair_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    *,
    gguf_metadata: Mapping[str, Any] | None = None,
    config: PretrainedConfig | None = None,
) -> PreTrainedTokenizerFast:
    """Return a tokenizer that is usable for labelling.

    tokenizer: a fast tokenizer, e.g. from `AutoTokenizer.from_pretrained`.
    gguf_metadata: metadata of the GGUF file the tokenizer came from (see
        `read_gguf_metadata`); its special-token ids, BOS and prefix-space flags and context
        length take precedence over what the tokenizer claims.
    config: the model's config; supplies the pad/eos ids and maximum length where the
        tokenizer and the metadata do not.

    A misassembled byte-level BPE tokenizer is replaced by a new `GPT2TokenizerFast`; any
    other tokenizer is adjusted in place and returned.
    """
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise CmllmTypeError(Errors.E018.format(cls=type(tokenizer).__name__))
    metadata = dict(gguf_metadata or {})

    specials = _declared_specials(tokenizer, metadata, config)
    if _is_misassembled_byte_level(tokenizer.backend_tokenizer):
        tokenizer = _rebuild_byte_level(tokenizer, specials, metadata)
    else:
        _fix_specials(tokenizer, specials, metadata)

    if tokenizer.pad_token is None:
        tokenizer.pad_token = _choose_pad(tokenizer, specials.get("pad_token"))
    tokenizer.padding_side = "right"
    max_length = _model_max_length(metadata, config)
    if tokenizer.model_max_length >= _UNBOUNDED_LENGTH and max_length is not None:
        tokenizer.model_max_length = max_length
    return tokenizer


def _declared_specials(
    tokenizer: PreTrainedTokenizerFast,
    metadata: Mapping[str, Any],
    config: PretrainedConfig | None,
) -> dict[str, str]:
    """Special tokens that the GGUF metadata (or, for a suspicious eos, the config) declares."""
    specials: dict[str, str] = {}
    for attribute, key in (
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ):
        token = _token_for_id(tokenizer, metadata.get(key))
        if token is not None:
            specials[attribute] = token
    # An eos equal to bos is what transformers' GGUF converter produces; a config that
    # disagrees is more trustworthy. (GPT-2 style bos == eos agrees with its config.)
    if "eos_token" not in specials and config is not None:
        if tokenizer.eos_token is None or tokenizer.eos_token == tokenizer.bos_token:
            token = _token_for_id(tokenizer, getattr(config, "eos_token_id", None))
            if token is not None:
                specials["eos_token"] = token
    if "pad_token" not in specials and tokenizer.pad_token is None and config is not None:
        token = _token_for_id(tokenizer, getattr(config, "pad_token_id", None))
        if token is not None:
            specials["pad_token"] = token
    return specials


def _token_for_id(tokenizer: PreTrainedTokenizerFast, token_id: Any) -> str | None:
    if isinstance(token_id, bool) or not isinstance(token_id, int):
        return None  # absent, or a list (several eos ids): no single answer
    if not 0 <= token_id < len(tokenizer):
        return None
    # One id in, one token out: transformers' annotation also covers a list of ids.
    return cast(str, tokenizer.convert_ids_to_tokens(token_id))


def _component_types(component: Any) -> set[str]:
    """All `type` names in a pre-tokenizer/decoder/processor, nested Sequences included."""
    if component is None:
        return set()
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "type" in node:
                found.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(component.__getstate__()))
    return found


def _is_misassembled_byte_level(backend: Tokenizer) -> bool:
    """True for a byte-level vocabulary paired with a SentencePiece decoder.

    That pairing is the fingerprint of transformers' GGUF conversion of byte-level BPE
    (`GGUFLlamaConverter` with a "gpt2" tokenizer model); the decoder garbles text and
    the rest of the wrapper (BOS template, eos, padding side) is wrong along with it.
    """
    if "ByteLevel" not in _component_types(backend.pre_tokenizer):
        return False
    return bool(_component_types(backend.decoder) & _SENTENCEPIECE_DECODERS)


def _rebuild_byte_level(
    tokenizer: PreTrainedTokenizerFast,
    specials: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> GPT2TokenizerFast:
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    add_prefix_space = bool(metadata.get("tokenizer.ggml.add_space_prefix", False))
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
    bos = specials.get("bos_token", tokenizer.bos_token)

    if _component_types(backend.pre_tokenizer) == {"ByteLevel"}:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)
    # The processor's add_prefix_space must match the pre-tokenizer's: when True it assumes
    # the first space was invented and leaves it inside the first piece's offsets.
    byte_level = processors.ByteLevel(add_prefix_space=add_prefix_space, trim_offsets=True)
    if add_bos and bos is not None:
        bos_id = tokenizer.convert_tokens_to_ids(bos)
        backend.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{bos} $A",
                    pair=f"{bos} $A {bos}:1 $B:1",
                    special_tokens=[(bos, bos_id)],
                ),
            ]
        )
    else:
        backend.post_processor = byte_level
    backend.decoder = decoders.ByteLevel()
    backend.no_padding()
    backend.no_truncation()

    main = {
        "bos_token": bos,
        "eos_token": specials.get("eos_token", tokenizer.eos_token),
        "unk_token": specials.get("unk_token", tokenizer.unk_token),
        "pad_token": specials.get("pad_token", tokenizer.pad_token),
    }
    others = [
        added.content
        for added in tokenizer.added_tokens_decoder.values()
        if added.special and added.content not in main.values()
    ]
    return GPT2TokenizerFast(
        tokenizer_object=backend,
        **main,
        additional_special_tokens=others,
        add_prefix_space=add_prefix_space,
        padding_side="right",
        truncation_side=tokenizer.truncation_side,
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=False,
        chat_template=tokenizer.chat_template,
        name_or_path=tokenizer.name_or_path,
    )


def _fix_specials(
    tokenizer: PreTrainedTokenizerFast,
    specials: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> None:
    changed = False
    for attribute, token in specials.items():
        if getattr(tokenizer, attribute) != token:
            setattr(tokenizer, attribute, token)
            changed = True
    add_bos = metadata.get("tokenizer.ggml.add_bos_token")
    if isinstance(add_bos, bool) and hasattr(tokenizer, "add_bos_token"):
        if tokenizer.add_bos_token != add_bos:
            tokenizer.add_bos_token = add_bos  # LlamaTokenizerFast rebuilds its template
            changed = True
    # LlamaTokenizerFast bakes bos/eos into its post-processor; refresh it after a change.
    if changed and hasattr(tokenizer, "update_post_processor"):
        tokenizer.update_post_processor()


def _choose_pad(tokenizer: PreTrainedTokenizerFast, declared: str | None) -> str:
    for candidate in (declared, tokenizer.eos_token, tokenizer.unk_token):
        if candidate is not None:
            return candidate
    raise CmllmError(Errors.E019.format(name=tokenizer.name_or_path))


def _model_max_length(metadata: Mapping[str, Any], config: PretrainedConfig | None) -> int | None:
    length = getattr(config, "max_position_embeddings", None) if config is not None else None
    if not isinstance(length, int):
        architecture = metadata.get("general.architecture")
        length = metadata.get(f"{architecture}.context_length") if architecture else None
    return length if isinstance(length, int) and length > 0 else None
