"""LoRA adapters through peft: the base stays frozen, only adapters train."""

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Sequence

import torch
from torch import nn

from ..errors import Errors

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoraSettings:
    """The adapter hyper-parameters; validated on construction."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: Sequence[str] = field(default=DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        def invalid(key: str, why: str) -> ValueError:
            return ValueError(Errors.E020.format(key=key, value=getattr(self, key), why=why))

        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise invalid("r", "the rank must be a positive integer")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise invalid("alpha", "the scaling must be a positive number")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise invalid("dropout", "the dropout must be in [0, 1)")
        if isinstance(self.target_modules, str) or not self.target_modules:
            raise invalid("target_modules", "give a non-empty list of module names, e.g. ['q_proj', 'v_proj']")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_dict(self) -> Dict[str, object]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


def add_lora(
    model: nn.Module,
    *,
    r: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.05,
    target_modules: Sequence[str] = DEFAULT_TARGETS,
) -> nn.Module:
    """Wrap ``model`` with LoRA adapters (peft). Returns the PeftModel; the base weights are
    frozen and the adapter weights are float32 even on a bf16 base (peft's adapter dtype
    autocast), because spaCy's optimizer works on float32 arrays."""
    from peft import LoraConfig, get_peft_model

    settings = LoraSettings(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in names]
    if missing:
        raise ValueError(
            Errors.E020.format(
                key="target_modules",
                value=list(settings.target_modules),
                why=f"the model has no module named {missing}",
            )
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    was_training = model.training
    wrapped = get_peft_model(model, config, autocast_adapter_dtype=True)
    # peft switches to training mode; keep the caller's mode so eval stays deterministic.
    wrapped.train(was_training)
    return wrapped


def trainable_parameters(model: nn.Module) -> List[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def adapter_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The adapter weights only (what training changed), detached on CPU."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_adapter_state(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Load adapter weights saved by adapter_state, refusing partial matches: a silently
    dropped adapter would make a pipeline predict like the untrained base."""
    from peft import set_peft_model_state_dict

    expected = set(adapter_state(model))
    if set(state) != expected:
        lost = sorted(expected - set(state))[:3]
        extra = sorted(set(state) - expected)[:3]
        raise ValueError(Errors.E031.format(why=f"missing adapter weights {lost}, unexpected {extra}"))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(Errors.E031.format(why=f"unexpected adapter weights {unexpected[:3]}"))
