"""The one training loop, for every model kind (and for the ``retrain`` gold standard).

Reproducibility without hidden state: the data order and every random draw of epoch ``e`` (modality
dropout, initialisation aside) come from generators seeded by ``(seed, e)``, and the learning rate is a
pure function of the step. So a run killed after epoch ``e`` and resumed from its checkpoint produces
the same final weights as a run that was never interrupted.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .configs import make_config
from .data.core import MultimodalDataset, data_fingerprint
from .errors import CheckpointError, ConfigError, DivergenceError
from .models import MultimodalModel
from .models.protocols import Trainable
from .optim import OptimConfig, optimizer_for, optimizer_step, set_lr
from .runtime import epoch_batches, seeded, to_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    """Training recipe: the shared optimiser knobs (`OptimConfig`) plus a schedule and checkpoints.

    Attributes:
        epochs: passes over the data (0 = keep the initial weights).
        warmup_epochs: linear warm-up length, then cosine decay to zero.
        checkpoint_every: write a resumable checkpoint every this many epochs (when an output folder is given).
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown fields are a `ConfigError`)."""
        return make_config(TrainConfig, {**dataclasses.asdict(self), **changes})

    def identity(self) -> dict[str, Any]:
        """The fields that determine the result (progress display excluded)."""
        d = dataclasses.asdict(self)
        d.pop("progress")
        d.pop("checkpoint_every")
        return d


@dataclass
class TrainResult:
    """What `train_model` returns: the trained model and how the run went."""

    model: Any
    epochs_run: int
    resumed_from: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _flatten_optimizer(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    return {f"opt.{i}.{k}": v for i, s in opt.state_dict()["state"].items() for k, v in s.items()}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _resume(out_dir: Path | None, model: Trainable, opt: torch.optim.Optimizer, run_id: dict[str, Any]) -> int:
    """Load a matching unfinished (or finished) run from ``out_dir``; return the epoch to start from."""
    if out_dir is None or not (out_dir / "manifest.json").is_file():
        return 0
    training = read_manifest(out_dir).get("training")
    if not training or training.get("run") != run_id:
        raise CheckpointError(
            f"{out_dir} holds a checkpoint of a different run (other data, model or recipe); "
            "choose another output folder or delete it"
        )
    ckpt = load_checkpoint(out_dir)
    model.load_state_dict(ckpt.model.state_dict())
    if ckpt.train_state:
        _restore_optimizer(opt, ckpt.train_state)
    log.info("resuming %s from epoch %d", out_dir, training["epoch"])
    return int(training["epoch"])


def train_model(
    model: Trainable,
    dataset: MultimodalDataset,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    provenance: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``model`` on ``dataset`` with its own objective (``model.loss``).

    Args:
        model: any module with a ``loss(batch)`` objective; trained in place and returned.
        dataset: training data; batches come from `MultimodalDataset.batch`.
        config: the recipe.
        out_dir: if given (registered models only), a resumable checkpoint is written there every
            ``checkpoint_every`` epochs and at the end, and an unfinished run found there is resumed.
        provenance: recorded in the checkpoint manifest (dataset name, size, seed...).
        device: where to train.

    Returns:
        The `TrainResult`.

    Raises:
        DivergenceError: the loss became NaN/inf; the weights of the last finished epoch are restored.
        CheckpointError: ``out_dir`` holds a checkpoint of a different run.
    """
    if len(dataset) == 0:
        raise ConfigError(f"cannot train on an empty dataset ({dataset.name!r})")
    device = torch.device(device)
    model.to(device)  # type: ignore[attr-defined]
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and not isinstance(model, MultimodalModel):
        raise ConfigError("resumable checkpoints (out_dir) need a registered model; train a user model without one")
    opt = optimizer_for(model, config)  # type: ignore[arg-type]
    run_id = {"config": config.identity(), "data": data_fingerprint(dataset), "model": getattr(model, "kind", "")}
    start = _resume(out, model, opt, run_id)
    steps = len(epoch_batches(len(dataset), config.batch_size, config.seed, 0))
    total, warmup = config.epochs * steps, round(config.warmup_epochs * steps)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start * steps, desc="train", unit="step", disable=None if config.progress else True)
    model.train()
    for epoch in range(start, config.epochs):
        good = copy.deepcopy(model.state_dict())
        loss_sum = 0.0
        with seeded(config.seed * 1_000_003 + epoch):
            for i, idx in enumerate(epoch_batches(len(dataset), config.batch_size, config.seed, epoch)):
                set_lr(opt, lr_at(epoch * steps + i, total, warmup, config.lr))
                loss = model.loss(to_device(dataset.batch(idx), device))
                value = float(loss.detach())
                if not math.isfinite(value):
                    model.load_state_dict(good)
                    bar.close()
                    raise DivergenceError(
                        f"training loss became {value} at epoch {epoch + 1}, step {i + 1}; restored the weights "
                        f"from the start of that epoch (try a lower --lr)"
                    )
                optimizer_step(model, opt, loss, config.grad_clip)  # type: ignore[arg-type]
                loss_sum += value
                bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / steps:.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps})
        if out is not None and ((epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save(out, model, opt, run_id, epoch + 1, config, provenance)  # type: ignore[arg-type]
    bar.close()
    if out is not None and start == config.epochs == 0:
        _save(out, model, opt, run_id, 0, config, provenance)  # type: ignore[arg-type]
    return TrainResult(model, config.epochs - start, start, time.perf_counter() - t0, history)


def _save(
    out: Path,
    model: MultimodalModel,
    opt: torch.optim.Optimizer,
    run_id: dict[str, Any],
    epoch: int,
    config: TrainConfig,
    provenance: dict[str, Any] | None,
) -> None:
    training = {"run": run_id, "epoch": epoch, "epochs": config.epochs, "finished": epoch == config.epochs}
    save_checkpoint(
        out, model, provenance=provenance, train_state=_flatten_optimizer(opt), extra={"training": training}
    )
