"""Move activation outliers into the weights before int8 quantization (SmoothQuant,
Xiao et al., 2023).

A few hidden channels of a decoder's activations are tens of times larger than the rest.
With one int8 scale per token those channels set the scale, and every other channel of the
token is left with a handful of levels. SmoothQuant divides each input channel j of a linear
layer by s_j and multiplies column j of its weight by s_j, which leaves the float product
unchanged and evens out the ranges that int8 has to cover, with

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

measured once on calibration text. The division is folded into the module that produces
the input, so prediction pays nothing for it:

* q/k/v_proj: into ``input_layernorm``'s weight (RMSNorm multiplies by its weight);
* gate/up_proj: into ``post_attention_layernorm``'s weight;
* o_proj: into v_proj's output rows (attention mixes positions, never channels; with
  grouped-query attention one value channel feeds one o_proj column per query head of its
  group, so those columns share one factor);
* down_proj: into up_proj's output rows (act(gate) * up is linear in up).

Groups whose producer has another form (Gemma's norm multiplies by 1 + weight, Phi-3 fuses
qkv) are left unsmoothed. The float model must compute the same function afterwards; the
copy checks that on the calibration text and refuses otherwise (E080).
"""

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import decoder_layers, find_base_model

DEFAULT_ALPHA = 0.5

# Fixed English paragraphs of mixed registers (news, dialogue, lists, numbers, social
# media), one calibration window each: the outlier channels are properties of the model,
# not of the text, so a few hundred tokens find them. Fixed, so an int8 copy is the same on
# every machine and at every load.
CALIBRATION_TEXTS = (
    "The European Commission said on Thursday it disagreed with German advice to consumers to shun "
    "British lamb until scientists determine whether mad cow disease can be transmitted to sheep.",
    "Shares in Tokyo closed 1.2 percent higher at 21,480.35 points, led by exporters such as Sony "
    "and Toyota, while the dollar rose to 112.40 yen.",
    "\"I don't think we'll make it before six,\" Maria told her brother, who had just landed in "
    "Boston after a delayed flight from Lisbon. He laughed and said the traffic on I-95 was worse.",
    "Ingredients: 2 cups of flour, 1 teaspoon of salt, 3 eggs, and 250 ml of milk. Mix well, then "
    "bake at 180 C for 25 minutes.",
    "@jamie_k omg the new season of that show is sooo good!!! cant wait for ep 3 #bingewatching",
    "The University of Chicago Press published the study, which followed 4,312 patients in "
    "Kenya, India and Brazil between 2015 and 2019. Dr. Amina Yusuf, who led it, said results "
    'were "encouraging but preliminary".',
    "Q: Where can I renew my passport? A: At any post office that offers the service, or online "
    "at the State Department's website; bring two photos and the old passport.",
    "Manchester United beat Arsenal 2-1 at Old Trafford on Saturday, with goals from Rashford "
    "and Fernandes, leaving Chelsea three points clear at the top of the Premier League.",
)


def smooth_for_int8(model: nn.Module, calibration: Sequence[torch.Tensor], *, alpha: float = DEFAULT_ALPHA) -> int:
    """Smooth the linear layers of ``model``'s decoder blocks in place for int8 quantization.

    model: a float decoder without adapters (merged), in eval mode.
    calibration: windows of token ids, each of shape (1, n), laid out as prediction lays
        out its windows (BOS sink first where it has one).
    alpha: how much of each channel's range moves into the weights (0: none, 1: all).
    RETURNS: how many groups of linear layers were smoothed. E080 if the model's output
    on the calibration tokens changed beyond float rounding.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CmllmError(Errors.E080.format(why=f"alpha must lie in [0, 1], not {alpha}"))
    layers = decoder_layers(model)
    if alpha == 0.0:
        return 0
    maxima = _input_maxima(model, layers, calibration)
    before = [_last_hidden(model, ids) for ids in calibration]
    count = 0
    for layer in layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        count += _into_norm(
            getattr(layer, "input_layernorm", None), _linears(attn, "q_proj", "k_proj", "v_proj"), maxima, alpha
        )
        count += _into_norm(
            getattr(layer, "post_attention_layernorm", None), _linears(mlp, "gate_proj", "up_proj"), maxima, alpha
        )
        count += _into_values(attn, maxima, alpha)
        count += _into_rows(_linears(mlp, "up_proj"), _linears(mlp, "down_proj"), maxima, alpha)
    after = [_last_hidden(model, ids) for ids in calibration]
    error = float(
        torch.cat([a - b for a, b in zip(after, before)], 1).norm() / torch.cat(before, 1).norm().clamp(min=1e-12)
    )
    if error > 1e-3:
        raise CmllmError(
            Errors.E080.format(
                why=f"the smoothed float model's output moved by {error:.1e} (relative) on the calibration text; this layout is not the Llama layout it assumes"
            )
        )
    return count


def _linears(module: nn.Module | None, *names: str) -> list[nn.Linear]:
    found = [getattr(module, name, None) for name in names]
    linears = [f for f in found if isinstance(f, nn.Linear)]
    return linears if len(linears) == len(found) else []


@torch.no_grad()
def _input_maxima(
    model: nn.Module, layers: Sequence[nn.Module], calibration: Sequence[torch.Tensor]
) -> dict[nn.Module, torch.Tensor]:
    """Per input channel, the largest |x| each linear layer of the blocks sees."""
    maxima: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.Module, args) -> None:
        # The attention sink (position 0) counts too: its few huge channels would leave
        # the sink's other channels almost no int8 levels, and every token reads the sink.
        x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0).float()
        maxima[module] = torch.maximum(maxima[module], x) if module in maxima else x

    hooks = [
        m.register_forward_pre_hook(record) for layer in layers for m in layer.modules() if isinstance(m, nn.Linear)
    ]
    try:
        for ids in calibration:
            _last_hidden(model, ids)
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


@torch.no_grad()
def _last_hidden(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    base = find_base_model(model)
    return base(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False).last_hidden_state


def _factors(act_max: torch.Tensor, weight_max: torch.Tensor, alpha: float) -> torch.Tensor:
    # Channels the calibration never lit (act_max 0) or dead columns keep factor 1.
    factors = act_max.clamp(min=1e-5).pow(alpha) / weight_max.clamp(min=1e-5).pow(1.0 - alpha)
    live = (act_max > 0) & (weight_max > 0)
    return torch.where(live, factors.clamp(min=1e-5), torch.ones_like(factors))


def _scales_with_weight(norm: nn.Module) -> bool:
    """Does the norm's output scale channel-wise with its weight (RMSNorm: weight * x_hat)?"""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        return False
    x = torch.randn(3, weight.shape[0], generator=torch.Generator().manual_seed(0), dtype=weight.dtype)
    with torch.no_grad():
        plain = norm(x)
        weight.mul_(2.0)
        try:
            doubled = norm(x)
        finally:
            weight.div_(2.0)
    return torch.allclose(doubled, 2.0 * plain, rtol=1e-4, atol=1e-6)


@torch.no_grad()
def _into_norm(
    norm: nn.Module | None, linears: list[nn.Linear], maxima: dict[nn.Module, torch.Tensor], alpha: float
) -> int:
    if norm is None or not linears or linears[0] not in maxima or not _scales_with_weight(norm):
        return 0
    weight_max = torch.stack([linear.weight.abs().amax(dim=0) for linear in linears]).amax(dim=0).float()
    factors = _factors(maxima[linears[0]], weight_max, alpha)
    # _scales_with_weight checked that it is a tensor; torch types the attribute Tensor | Module.
    norm_weight = cast(torch.Tensor, norm.weight)
    norm_weight.div_(factors.to(norm_weight.dtype))
    for linear in linears:
        linear.weight.mul_(factors.to(linear.weight.dtype))
    return 1


@torch.no_grad()
def _into_rows(
    producers: list[nn.Linear], consumers: list[nn.Linear], maxima: dict[nn.Module, torch.Tensor], alpha: float
) -> int:
    """Fold into the output rows of a producer whose output reaches the consumer scaled
    channel by channel (up_proj -> down_proj)."""
    if not producers or not consumers or consumers[0] not in maxima:
        return 0
    producer, consumer = producers[0], consumers[0]
    factors = _factors(maxima[consumer], consumer.weight.abs().amax(dim=0).float(), alpha)
    _divide_rows(producer, factors)
    consumer.weight.mul_(factors.to(consumer.weight.dtype))
    return 1


@torch.no_grad()
def _into_values(attn: nn.Module | None, maxima: dict[nn.Module, torch.Tensor], alpha: float) -> int:
    """Fold o_proj's factors into v_proj's rows; a value channel serves ``groups`` query heads."""
    linears = _linears(attn, "v_proj", "o_proj")
    if not linears or linears[1] not in maxima or getattr(attn, "v_norm", None) is not None:
        return 0
    v_proj, o_proj = linears
    n_values, n_inputs = v_proj.out_features, o_proj.in_features
    head_dim = getattr(attn, "head_dim", None)
    if not head_dim or n_inputs % n_values or n_values % head_dim:
        return 0
    groups = n_inputs // n_values
    n_kv_heads = n_values // head_dim

    def per_value(per_input: torch.Tensor) -> torch.Tensor:
        # o_proj input (head h, dim d) reads value (head h // groups, dim d).
        return per_input.reshape(n_kv_heads, groups, head_dim).amax(dim=1).reshape(n_values)

    act_max = per_value(maxima[o_proj])
    weight_max = per_value(o_proj.weight.abs().amax(dim=0).float())
    factors = _factors(act_max, weight_max, alpha)
    _divide_rows(v_proj, factors)
    expanded = factors.reshape(n_kv_heads, 1, head_dim).expand(n_kv_heads, groups, head_dim).reshape(n_inputs)
    o_proj.weight.mul_(expanded.to(o_proj.weight.dtype))
    return 1


def _divide_rows(linear: nn.Linear, factors: torch.Tensor) -> None:
    linear.weight.div_(factors.to(linear.weight.dtype)[:, None])
    if linear.bias is not None:
        linear.bias.div_(factors.to(linear.bias.dtype))
