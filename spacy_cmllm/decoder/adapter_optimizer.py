"""The decoder's adapters get their own optimizer: AdamW, warm-up + decay, global clipping.

spaCy hands every component the one thinc optimizer of ``[training.optimizer]``: one
learning rate and schedule for everything, and gradient clipping per tensor. LoRA adapters
want what peft users and the paper use instead — a smaller rate with a real warm-up and
cosine or linear decay, and clipping of the norm over ALL adapter parameters together — while
the freshly initialised heads learn best at a higher rate. So the adapters are stepped here by
a torch optimizer, and the thinc optimizer keeps the heads.

The torch optimizer is created at the first update (the weights load at initialize) and
steps once per ``finish_update``, i.e. once per training step. Like spaCy's own optimizer
state, its moments and position in the schedule are not saved with the pipeline.
"""

import math
from dataclasses import dataclass

import torch

from ..errors import CmllmError, Errors

SCHEDULES = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class AdapterOptimizer:
    """How the adapters learn.

    learn_rate (float): peak learning rate, reached at the end of the warm-up.
    total_steps (int): training steps the schedule spans (``${training.max_steps}``).
    warmup (float): warm-up length: a fraction of total_steps if below 1, else a step count.
    schedule (str): decay after the warm-up, to min_rate at total_steps: "cosine", "linear"
        or "constant".
    min_rate (float): the rate at the end of the decay.
    beta1, beta2, eps (float): Adam's moment settings.
    weight_decay (float): decoupled (AdamW) weight decay.
    grad_clip (float): bound on the global L2 norm of all adapter gradients; 0 = no clipping.
    """

    learn_rate: float = 2e-4
    total_steps: int = 0
    warmup: float = 0.1
    schedule: str = "cosine"
    min_rate: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        def invalid(name: str, why: str) -> ValueError:
            return CmllmError(Errors.E045.format(name=name, value=getattr(self, name), why=why))

        for name in ("learn_rate", "min_rate", "eps", "weight_decay", "grad_clip", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise invalid(name, "must be a finite number >= 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise invalid(name, "must be in [0, 1)")
        if isinstance(self.total_steps, bool) or not isinstance(self.total_steps, int) or self.total_steps < 0:
            raise invalid("total_steps", "must be an integer >= 0")
        if self.schedule not in SCHEDULES:
            raise invalid("schedule", f"choose one of {', '.join(SCHEDULES)}")
        if self.total_steps == 0 and (self.schedule != "constant" or self.warmup_steps):
            raise invalid(
                "total_steps",
                "a warm-up or a decaying schedule needs the training length: set total_steps = "
                '${training.max_steps} (and max_steps > 0), or use schedule = "constant" with warmup = 0',
            )
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise invalid("warmup", "give a fraction below 1 or a whole number of steps")
        if self.total_steps and self.warmup_steps > self.total_steps:
            raise invalid("warmup", f"the warm-up ({self.warmup_steps} steps) is longer than total_steps")

    @property
    def warmup_steps(self) -> int:
        if self.warmup < 1:
            return int(round(self.warmup * self.total_steps))
        return int(self.warmup)

    def rate(self, step: int) -> float:
        """The learning rate for the 0-based training step `step`."""
        warmup = self.warmup_steps
        if step < warmup:
            return self.learn_rate * (step + 1) / warmup
        if self.schedule == "constant":
            return self.learn_rate
        span = max(self.total_steps - warmup, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        if self.schedule == "linear":
            factor = 1.0 - progress
        else:
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_rate + (self.learn_rate - self.min_rate) * factor


def adamw_kernel(parameters) -> dict:
    """AdamW's fused CUDA kernel when every adapter is on a GPU: one launch for all of them,
    where the default steps them in groups of several kernels each; elsewhere the default."""
    parameters = list(parameters)
    if parameters and all(p.is_cuda for p in parameters):
        return {"fused": True}
    return {}


class AdapterStepper:
    """A torch AdamW over the trainable parameters of `module`, stepped once per update."""

    def __init__(self, settings: AdapterOptimizer, module: torch.nn.Module):
        self.settings = settings
        self.module = module
        parameters = [p for p in module.parameters() if p.requires_grad]
        self.parameters = parameters
        self.step_count = 0
        # Kept as a tensor on the adapters' device: reading it as a float every step would
        # wait for the GPU to finish the step (one synchronisation per step, for a log line).
        self._last_grad_norm: torch.Tensor | None = None
        self.optimizer = torch.optim.AdamW(
            parameters,
            lr=settings.rate(0),
            betas=(settings.beta1, settings.beta2),
            eps=settings.eps,
            weight_decay=settings.weight_decay,
            **adamw_kernel(parameters),
        )

    @property
    def last_grad_norm(self) -> float | None:
        """The global L2 norm of the adapter gradients at the last step (before clipping)."""
        return None if self._last_grad_norm is None else float(self._last_grad_norm)

    def step(self) -> None:
        """Clip the global gradient norm, step, and clear the gradients. Parameters that got
        no gradient (a batch that never reached them) are left as they are."""
        with_grad = [p for p in self.parameters if p.grad is not None]
        if with_grad:
            if self.settings.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(with_grad, self.settings.grad_clip)
            else:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in with_grad]))
            self._last_grad_norm = norm.detach()
            for group in self.optimizer.param_groups:
                group["lr"] = self.settings.rate(self.step_count)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
