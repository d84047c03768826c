"""Where the decoder blocks live in a Hugging Face model, whatever wraps it.

Llama, Mistral, Qwen2, Gemma, Phi-3 and their relatives share one layout: a base model
with a ``layers`` ModuleList of decoder blocks, each holding a ``self_attn`` module; the
*ForCausalLM classes keep that base model under ``.model``; peft wraps either.
"""

from typing import cast

from torch import nn

from ..errors import CmllmError, Errors

SUPPORTED_ATTENTION = ("eager", "sdpa")


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The model under a peft wrapper (PeftModel or LoraModel), or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        return get_base()
    return model


def find_base_model(model: nn.Module) -> nn.Module:
    """The module that owns the decoder blocks (e.g. the LlamaModel inside a
    LlamaForCausalLM), raising E002 for anything without that layout."""
    if not isinstance(model, nn.Module):
        raise CmllmError(Errors.E002.format(cls=type(model).__name__, why="It is not a torch module."))
    inner = unwrap_peft(model)
    for candidate in (inner, getattr(inner, "model", None)):
        layers = getattr(candidate, "layers", None)
        if candidate is not None and isinstance(layers, nn.ModuleList) and len(layers) > 0:
            if all(isinstance(getattr(layer, "self_attn", None), nn.Module) for layer in layers):
                return candidate
            raise CmllmError(
                Errors.E002.format(cls=type(model).__name__, why="Its decoder blocks have no `self_attn` module.")
            )
    raise CmllmError(Errors.E002.format(cls=type(model).__name__, why="No `layers` list of decoder blocks was found."))


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks that the base model's forward actually runs, input side first."""
    base = find_base_model(model)
    # find_base_model checked it; torch types any submodule attribute as Tensor | Module.
    blocks = cast(nn.ModuleList, base.layers)
    n_layers = getattr(getattr(base, "config", None), "num_hidden_layers", None) or len(blocks)
    return list(blocks[:n_layers])


def attention_implementation(model: nn.Module) -> str:
    """The attention kernel the model's config selects ('sdpa', 'eager', ...)."""
    config = getattr(find_base_model(model), "config", None)
    return getattr(config, "_attn_implementation", None) or "eager"


def check_attention_supported(model: nn.Module) -> str:
    """The attention kernel, if unmasking can steer it correctly: 'eager' or 'sdpa', and
    'eager' only for models that soft-cap attention scores (Gemma-2), since SDPA drops the
    cap (E023)."""
    impl = attention_implementation(model)
    if impl not in SUPPORTED_ATTENTION:
        raise CmllmError(Errors.E003.format(impl=impl))
    base = find_base_model(model)
    softcap = getattr(getattr(base, "config", None), "attn_logit_softcapping", None)
    if softcap is not None and impl != "eager":
        raise CmllmError(Errors.E023.format(cls=type(base).__name__, softcap=softcap, impl=impl))
    return impl
