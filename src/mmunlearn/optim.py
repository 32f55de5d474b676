"""The one optimiser config and the one optimiser step, shared by training, unlearning, protection and attacks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class OptimConfig:
    """Knobs every optimisation loop shares (training recipes and unlearning methods extend it).

    Attributes:
        epochs: passes of the loop.
        batch_size: samples per step.
        lr: (peak) learning rate.
        weight_decay: decoupled weight decay, never applied to 1-D parameters (biases, norms, temperature).
        grad_clip: max gradient norm (None = off).
        optimizer: ``"adamw"`` or ``"sgd"`` (SGD with momentum 0.9, as in the SalUn/Sparse code).
        seed: seeds the data order and every random draw.
        progress: progress display (a bar on a terminal, plain lines otherwise).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    optimizer: str = "adamw"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def make_optimizer(
    model: nn.Module, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the trainable parameters; no weight decay on 1-D parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def optimizer_for(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """`make_optimizer` with a config's optimiser, learning rate and weight decay."""
    return make_optimizer(model, config.optimizer, config.lr, config.weight_decay)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, grad_clip: float | None) -> None:
    """One step: clear the gradients, back-propagate ``loss``, clip the gradient norm, update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
