"""The one optimiser config and the one optimiser step, shared by training, unlearning, protection and attacks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import ConfigError, DivergenceError

OPTIMIZERS = ("adamw", "sgd")
MAX_LR = 1e30
"""The largest learning rate a config accepts.

Above it torch itself fails: AdamW's first step size is ``lr / (1 - beta1) = 10 * lr`` and SGD multiplies
the gradient by ``lr``, and both must fit in a float32 (at most 3.4e38), so an lr of 1e38 and more ends in
an overflow traceback inside the optimiser. 1e30 leaves that margin for gradients up to 1e7 after
clipping. Lower values that are merely far too high (1e3, 1e8) are not refused here, because where
training starts to diverge depends on the model and the loss scale: they fail at run time, after the
step that breaks the weights, with a `DivergenceError` that restores the last good weights.
"""


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
        check_lr(self.lr)
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def check_lr(lr: float, name: str = "lr") -> None:
    """Refuse a learning rate that is not a finite number in (0, `MAX_LR`].

    Raises:
        ConfigError: ``lr must be a positive number at most 1e+30, got ...``.
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (0 < lr <= MAX_LR and math.isfinite(lr)):
        raise ConfigError(f"{name} must be a positive number at most {MAX_LR:g}, got {lr!r}")


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


def checked_step(
    model: nn.Module, opt: torch.optim.Optimizer, loss: Tensor, grad_clip: float | None, what: str
) -> None:
    """`optimizer_step` after checking that ``loss`` is finite, for the small inner loops of methods that
    train a helper model (an expert, a fine-tuned copy) outside the shared loop.

    Raises:
        DivergenceError: ``"<what> loss became <value> (try a lower lr)"``; nothing is stepped.
    """
    if not torch.isfinite(loss):
        raise DivergenceError(f"{what} loss became {float(loss.detach())} ({divergence_hint(True)})")
    optimizer_step(model, opt, loss, grad_clip)


def check_weights(model: nn.Module, what: str) -> None:
    """Raise ``DivergenceError("<what> weights became NaN/inf (try a lower lr)")`` unless `weights_finite`."""
    if not weights_finite(model):
        raise DivergenceError(f"{what} weights became NaN/inf ({divergence_hint(True)})")


def weights_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one fused reduction, one device sync).

    The max of absolute values, not a norm: a norm of large but finite weights can overflow to inf.
    """
    peaks = [p.detach().abs().max() for p in model.parameters() if p.numel()]
    return not peaks or bool(torch.stack(peaks).isfinite().all())


def batch_finite(*batches: dict[str, Tensor] | None) -> bool:
    """Whether every floating-point tensor of the given batches is finite (None batches are skipped)."""
    return all(
        bool(torch.isfinite(t).all()) for b in batches if b is not None for t in b.values() if t.is_floating_point()
    )


def divergence_hint(data_finite: bool) -> str:
    """The end of a divergence message: blame the data when they were not finite, else the learning rate."""
    return "try a lower lr" if data_finite else "the data contain NaN/inf values: clean them (the lr is not the cause)"


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """The optimizer's state as a flat ``opt.<param index>.<name>`` -> tensor map (for safetensors)."""
    return {f"opt.{i}.{k}": torch.as_tensor(v) for i, s in opt.state_dict()["state"].items() for k, v in s.items()}


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    """Restore the state written by `optimizer_tensors` (keys not starting with ``opt.`` are ignored)."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
