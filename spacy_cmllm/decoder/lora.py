"""LoRA adapters through peft: the base stays frozen, only adapters train."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CmllmError, Errors
from .layout import decoder_layers

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# Family-independent names for sets of target modules. Each is resolved against the model:
# the first alternative whose modules the model all has. Phi-3 fuses q/k/v into qkv_proj.
TARGET_SETS: dict[str, Sequence[Sequence[str]]] = {
    "attention": (("q_proj", "k_proj", "v_proj", "o_proj"), ("qkv_proj", "o_proj")),
    # Attention and MLP: on CoNLL-2003 within one epoch, adapting the MLP too was worth about
    # two F1 to SmolLM2-135M (benchmarks/results/conll03_recipe.csv).
    "all-linear": (
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    ),
}


@dataclass(frozen=True)
class LoraSettings:
    """The adapter hyper-parameters; validated on construction."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: str | Sequence[str] = field(default=DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        def invalid(key: str, why: str) -> ValueError:
            return CmllmError(Errors.E020.format(key=key, value=getattr(self, key), why=why))

        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise invalid("r", "the rank must be a positive integer")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise invalid("alpha", "the scaling must be a positive number")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise invalid("dropout", "the dropout must be in [0, 1)")
        if isinstance(self.target_modules, str):
            if self.target_modules not in TARGET_SETS:
                raise invalid(
                    "target_modules",
                    f"give a non-empty list of module names, e.g. ['q_proj', 'v_proj'], or one of {sorted(TARGET_SETS)}",
                )
            return
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise invalid("target_modules", "give a non-empty list of module names, e.g. ['q_proj', 'v_proj']")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not isinstance(self.target_modules, str):
            data["target_modules"] = list(self.target_modules)
        return data


def block_linear_names(model: nn.Module) -> list[str]:
    """The names of the linear modules inside the decoder blocks (q_proj, qkv_proj, ...)."""
    names = set()
    for layer in decoder_layers(model):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear) and name and "lora_" not in name:
                names.add(name.rsplit(".", 1)[-1])
    return sorted(names - {"base_layer"})


def resolve_target_modules(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """The module names to adapt in ``model``: a list is checked against the model (E021
    names what is missing and what there is); a set name such as "attention" becomes the
    family's names (E022 when no alternative fits)."""
    if isinstance(target_modules, str):
        available = set(block_linear_names(model))
        for alternative in TARGET_SETS.get(target_modules, ()):
            if set(alternative) <= available:
                return list(alternative)
        raise CmllmError(
            Errors.E022.format(
                name=target_modules,
                alternatives=" or ".join(str(list(a)) for a in TARGET_SETS.get(target_modules, ())),
                available=sorted(available),
            )
        )
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise CmllmError(
            Errors.E021.format(value=list(target_modules), missing=missing, available=block_linear_names(model))
        )
    return list(target_modules)


def add_lora(
    model: nn.Module,
    *,
    r: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.05,
    target_modules: str | Sequence[str] = DEFAULT_TARGETS,
) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (peft). Returns the PeftModel; the base weights are
    frozen and the adapter weights are float32 even on a bf16 base (peft's adapter dtype
    autocast), because spaCy's optimizer works on float32 arrays.

    target_modules: module names (``["q_proj", "v_proj"]``), or ``"attention"`` for the
    attention projections of the model's family (q/k/v/o_proj; qkv_proj and o_proj on Phi-3),
    or ``"all-linear"`` for those and the MLP's (gate/up/down_proj; gate_up_proj and
    down_proj on Phi-3).
    """
    from peft import LoraConfig, get_peft_model

    settings = LoraSettings(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)
    targets = resolve_target_modules(model, settings.target_modules)
    config = LoraConfig(
        r=settings.r,
        # peft annotates lora_alpha as int but only divides by it; alpha may be 32.0 or 2.5.
        lora_alpha=settings.alpha,  # type: ignore[arg-type]
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
    )
    was_training = model.training
    wrapped = get_peft_model(model, config, autocast_adapter_dtype=True)
    # peft switches to training mode; keep the caller's mode so eval stays deterministic.
    wrapped.train(was_training)
    return wrapped


def trainable_parameters(model: nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (what training changed), detached on CPU."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights saved by adapter_state, refusing partial matches: a silently
    dropped adapter would make a pipeline predict like the untrained base."""
    from peft import set_peft_model_state_dict

    expected = set(adapter_state(model))
    if set(state) != expected:
        lost = sorted(expected - set(state))[:3]
        extra = sorted(set(state) - expected)[:3]
        raise CmllmError(Errors.E031.format(why=f"missing adapter weights {lost}, unexpected {extra}"))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise CmllmError(Errors.E031.format(why=f"unexpected adapter weights {unexpected[:3]}"))
