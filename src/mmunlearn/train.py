"""The one training loop, for every model kind (and for the ``retrain`` gold standard).

Reproducibility without hidden state: the data order and every random draw of epoch ``e`` (modality
dropout, initialisation aside) come from generators seeded by ``(seed, e)``, and the learning rate is a
pure function of the step. So a run killed after epoch ``e`` and resumed from its checkpoint produces
the same final weights as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .data.core import MultimodalDataset
from .errors import CheckpointError, ConfigError, DivergenceError
from .models import MODELS, MultimodalModel
from .models.base import make_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe.

    Attributes:
        epochs: passes over the data (0 = keep the initial weights).
        batch_size: samples per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length, then cosine decay to zero.
        seed: seeds the data order and the random draws of each epoch.
        grad_clip: max gradient norm (None = no clipping).
        checkpoint_every: write a resumable checkpoint every this many epochs (when an output folder is given).
        progress: show a progress bar (only on a terminal).
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    grad_clip: float | None = 5.0
    checkpoint_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown fields are a `ConfigError`)."""
        return make_config(TrainConfig, {**dataclasses.asdict(self), **changes})  # type: ignore[no-any-return]

    def identity(self) -> dict[str, Any]:
        """The fields that determine the result (progress display excluded)."""
        d = dataclasses.asdict(self)
        d.pop("progress")
        d.pop("checkpoint_every")
        return d


@dataclass
class TrainResult:
    """What `train` returns: the trained model and how the run went."""

    model: MultimodalModel
    epochs_run: int
    resumed_from: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def build_model(kind: str, seed: int, **config: Any) -> MultimodalModel:
    """Create a registered model with initial weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MODELS.create(kind, **config)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; other names are passed to `torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def data_fingerprint(dataset: MultimodalDataset) -> str:
    """SHA-256 of the ids, inputs, labels and presence masks of a dataset (detects a different training set)."""
    h = hashlib.sha256("\n".join(dataset.ids).encode())
    tensors = [dataset.inputs[m] for m in sorted(dataset.inputs)] + [
        dataset.present[m] for m in sorted(dataset.present)
    ]
    for t in [*tensors, *([dataset.labels] if dataset.labels is not None else [])]:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[Tensor]:
    """The shuffled index batches of one epoch (a pure function of its arguments).

    The last incomplete batch is dropped when there is more than one batch, so contrastive losses
    never see a tiny batch.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the previous state afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases, norms and the temperature (1-D parameters)."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    other = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    return {f"opt.{i}.{k}": v for i, s in opt.state_dict()["state"].items() for k, v in s.items()}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _resume(out_dir: Path | None, model: MultimodalModel, opt: torch.optim.Optimizer, run_id: dict[str, Any]) -> int:
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


def train(
    model: MultimodalModel,
    dataset: MultimodalDataset,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``model`` on ``dataset`` with its own objective (``model.loss``).

    Args:
        model: a registered model; trained in place and returned.
        dataset: training data; batches come from `MultimodalDataset.batch`.
        config: the recipe.
        out_dir: if given, a resumable checkpoint is written there every ``checkpoint_every`` epochs and
            at the end, and an unfinished run found there is resumed.
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
    model.to(device)
    out = Path(out_dir) if out_dir is not None else None
    opt = optimizer_for(model, config)
    run_id = {"config": config.identity(), "data": data_fingerprint(dataset), "model": model.kind}
    start = _resume(out, model, opt, run_id)
    steps = len(epoch_batches(len(dataset), config.batch_size, config.seed, 0))
    total, warmup = config.epochs * steps, round(config.warmup_epochs * steps)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start * steps, desc="train", unit="step", disable=None if config.progress else True)
    for epoch in range(start, config.epochs):
        good = copy.deepcopy(model.state_dict())
        loss_sum = 0.0
        with seeded(config.seed * 1_000_003 + epoch):
            for i, idx in enumerate(epoch_batches(len(dataset), config.batch_size, config.seed, epoch)):
                lr = lr_at(epoch * steps + i, total, warmup, config.lr)
                loss = _step(model, opt, dataset.batch(idx), lr, config.grad_clip, device)
                if not math.isfinite(loss):
                    model.load_state_dict(good)
                    bar.close()
                    raise DivergenceError(
                        f"training loss became {loss} at epoch {epoch + 1}, step {i + 1}; restored the weights "
                        f"from the start of that epoch (try a lower --lr)"
                    )
                loss_sum += loss
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps})
        if out is not None and ((epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save(out, model, opt, run_id, epoch + 1, config, provenance)
    bar.close()
    if out is not None and start == config.epochs == 0:
        _save(out, model, opt, run_id, 0, config, provenance)
    return TrainResult(model, config.epochs - start, start, time.perf_counter() - t0, history)


def _step(
    model: MultimodalModel,
    opt: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    lr: float,
    clip: float | None,
    device: torch.device,
) -> float:
    model.train()
    for g in opt.param_groups:
        g["lr"] = lr
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    loss = model.loss(batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return value


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
