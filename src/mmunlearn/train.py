"""The one training loop, for every model kind (and for the ``retrain`` gold standard).

Reproducibility without hidden state: the data order and every random draw of epoch ``e`` (modality
dropout, initialisation aside) come from generators seeded by ``(seed, e)``, and the learning rate is a
pure function of the step. So a run killed after epoch ``e`` and resumed from its checkpoint produces
the same final weights as a run that was never interrupted.

The divergence guard sees every step: the loss before it, the weights after it (one fused check, about
0.2% of a step of the av-digits recipe), and, after the last step of the run (which no later loss
checks), the model's outputs on its batch: a step can leave finite weights whose outputs are NaN/inf.

`WorkFolder` is the scratch folder of the other resumable loops (``forget``, ``protect``): the last
complete state of a run, saved crash-atomically and resumed only by the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from . import distributed as dist
from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .configs import make_config
from .data.core import MultimodalDataset, data_fingerprint
from .errors import CheckpointError, ConfigError, DivergenceError
from .fileio import MANIFEST, commit_folder, read_json_manifest, resolve_file, sha256_file
from .models import MultimodalModel
from .models.protocols import ShardedLoss, Trainable
from .optim import (
    OptimConfig,
    batch_finite,
    divergence_hint,
    load_optimizer_tensors,
    optimizer_for,
    optimizer_step,
    optimizer_tensors,
    set_lr,
    weights_finite,
)
from .runtime import Batch, epoch_batches, eval_mode, progress, seeded, to_device
from .tensorio import tensors_to_bytes

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
    """What `train_model` returns: the trained model and how the run went.

    Attributes:
        seconds: wall time of this call (the epochs it ran).
        total_seconds: wall time of every epoch of the run, across resumes (from the checkpoint's
            manifest when the run was resumed; equal to ``seconds`` otherwise).
    """

    model: Any
    epochs_run: int
    resumed_from: int
    seconds: float
    total_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class Resumed:
    """Where a resumed training run stands: the epoch to start from and the seconds its epochs took."""

    epoch: int = 0
    seconds: float = 0.0


def _resume(out_dir: Path | None, model: Trainable, opt: torch.optim.Optimizer, run_id: dict[str, Any]) -> Resumed:
    """Load a matching unfinished (or finished) run from ``out_dir``.

    Under torchrun rank 0 reads its folder and every rank loads what it read (`mmunlearn.distributed.share`),
    so that all ranks resume from the same state (the other ranks' folders may be private and empty).
    """
    found = dist.share(lambda: _read_saved(out_dir, run_id)) if dist.active() else _read_saved(out_dir, run_id)
    if found is None:
        return Resumed()
    resumed, weights, train_state = found
    model.load_state_dict(weights)
    if train_state:
        load_optimizer_tensors(opt, train_state)
    return resumed


def _read_saved(
    out_dir: Path | None, run_id: dict[str, Any]
) -> tuple[Resumed, dict[str, Tensor], dict[str, Tensor] | None] | None:
    """The saved run in ``out_dir`` (where it stands, its weights, its optimizer tensors), or None."""
    if out_dir is None or not (out_dir / "manifest.json").is_file():
        return None
    training = read_manifest(out_dir).get("training")
    if not training or training.get("run") != run_id:
        raise CheckpointError(
            f"{out_dir} holds a checkpoint of a different run (other data, model or recipe); "
            "choose another output folder or delete it"
        )
    ckpt = load_checkpoint(out_dir)
    log.info("resuming %s from epoch %d", out_dir, training["epoch"])
    resumed = Resumed(int(training["epoch"]), float(training.get("seconds", 0.0)))
    return resumed, ckpt.model.state_dict(), ckpt.train_state or None


def outputs_finite(model: Trainable, *batches: Batch | None) -> bool:
    """Whether the model's objective on the given batches is finite (eval mode, no gradient, RNG untouched).

    A step can leave finite but huge weights whose outputs are NaN/inf; the weight check misses that,
    and the next step's loss catches it, except after the last step: the loops call this there.
    """
    with torch.random.fork_rng(), eval_mode(model):
        return all(math.isfinite(float(model.loss(b))) for b in batches if b is not None)


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

    Under torchrun (a process group of several ranks, `mmunlearn.distributed`) every rank calls this with
    the same arguments: each trains on its shard of every global batch, DDP averages the gradients, the
    weights stay equal on every rank; only a rank whose ``out_dir`` is not rank 0's, or rank 0, writes it.

    Returns:
        The `TrainResult`.

    Raises:
        DivergenceError: the loss before a step, the weights after it or the outputs after the last one became
            NaN/inf; the weights of the last finished epoch are restored.
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
    run_id: dict[str, Any] = {}  # identifies the run in a resumable checkpoint (hashing the data costs time: only then)
    if out is not None:
        run_id = {"config": config.identity(), "data": data_fingerprint(dataset), "model": getattr(model, "kind", "")}
    resumed = _resume(out, model, opt, run_id)
    start = resumed.epoch
    steps = len(epoch_batches(len(dataset), config.batch_size, config.seed, 0))
    writes = out is not None and dist.writes_to(out)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = progress(
        total=config.epochs * steps,
        initial=start * steps,
        desc="train",
        unit="step",
        enabled=config.progress and dist.is_main(),
    )
    try:
        for epoch in range(start, config.epochs):
            loss = _train_epoch(model, dataset, config, opt, epoch, device, bar)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
            history.append({"epoch": epoch + 1, "loss": loss})
            if out is not None and ((epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs):
                seconds = resumed.seconds + time.perf_counter() - t0
                _save(out, model, opt, run_id, epoch + 1, seconds, config, provenance, writes)  # type: ignore[arg-type]
    finally:
        bar.close()
    if out is not None and start == config.epochs:  # nothing trained: 0 epochs, or a finished run resumed
        # a rank whose folder is private (the CLI's other ranks) holds no checkpoint of a resumed run yet
        missing = writes and (start == 0 or not (out / MANIFEST).is_file())
        _save(out, model, opt, run_id, start, resumed.seconds, config, provenance, missing)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    return TrainResult(model, config.epochs - start, start, seconds, resumed.seconds + seconds, history)


def _train_epoch(
    model: Trainable,
    dataset: MultimodalDataset,
    config: TrainConfig,
    opt: torch.optim.Optimizer,
    epoch: int,
    device: torch.device,
    bar: Any,
) -> float:
    """One epoch under the divergence guard; returns its mean loss.

    Under torchrun each rank computes the loss of its `mmunlearn.distributed.shard` of every global batch
    through DDP (gradients averaged), weighted so that the update is that of the global batch's mean loss;
    the guard checks the global mean loss (the same float on every rank), so every rank takes the same branch.
    """
    good = copy.deepcopy(model.state_dict())
    batches = epoch_batches(len(dataset), config.batch_size, config.seed, epoch)
    steps = len(batches)
    total, warmup = config.epochs * steps, round(config.warmup_epochs * steps)
    loss_sum, batch = 0.0, None
    parallel = dist.active()
    objective = dist.data_parallel(model, _model_loss) if parallel else None  # type: ignore[arg-type]
    model.train()
    with seeded(_epoch_seed(config.seed, epoch)):
        for i, idx in enumerate(batches):
            set_lr(opt, lr_at(epoch * steps + i, total, warmup, config.lr))
            mine = dist.shard(idx) if parallel else idx
            batch = to_device(dataset.batch(mine), device)
            if objective is None:
                loss = model.loss(batch)
                value = float(loss.detach())
            else:
                loss = objective(batch)
                value = dist.global_mean(loss, len(mine), len(idx))
                loss = loss * dist.shard_weight(len(mine), len(idx))
            if not math.isfinite(value):
                _diverged(model, good, f"loss became {value}", epoch, i, batch)
            optimizer_step(model, opt, loss, config.grad_clip)  # type: ignore[arg-type]
            if not weights_finite(model):  # type: ignore[arg-type]
                _diverged(model, good, "weights became NaN/inf", epoch, i, batch)
            loss_sum += value
            bar.update(1)
    del objective  # DDP's hooks go with it
    last = epoch + 1 == config.epochs
    if last and not dist.all_true(outputs_finite(model, batch)):  # no next loss checks the last step
        _diverged(model, good, "outputs became NaN/inf", epoch, steps - 1, batch)
    model.train()
    return loss_sum / steps


def _model_loss(model: Trainable, batch: Batch) -> Tensor:
    """The model's own objective on this rank's shard, as the function `mmunlearn.distributed.data_parallel`
    wraps: `ShardedLoss.sharded_loss` where the model has one (a contrastive loss over the global batch),
    else ``loss`` (a mean of per-sample terms, which the shards' weighting makes the global batch's)."""
    return model.sharded_loss(batch) if isinstance(model, ShardedLoss) else model.loss(batch)


def _epoch_seed(seed: int, epoch: int) -> int:
    """The global RNG seed of one epoch (modality dropout...): ``(seed, epoch)``, and under torchrun the rank.

    Rank 0 uses the one-process seed; rank r > 0 adds ``r * 2**40``, so that the random draws of the
    model's objective (one per sample of its shard) are not the same on every rank. Training draws
    nothing that the ranks must share (the data order has its own generator).
    """
    return seed * 1_000_003 + epoch + dist.rank() * (1 << 40)


def _diverged(
    model: Trainable, good: dict[str, Tensor], what: str, epoch: int, step: int, batch: Batch | None
) -> NoReturn:
    """Restore the weights of the start of the epoch and raise the `DivergenceError`."""
    model.load_state_dict(good)
    raise DivergenceError(
        f"training {what} at epoch {epoch + 1}, step {step + 1}; restored the weights from the start of that "
        f"epoch ({divergence_hint(batch_finite(batch))})"
    )


def _save(
    out: Path,
    model: MultimodalModel,
    opt: torch.optim.Optimizer,
    run_id: dict[str, Any],
    epoch: int,
    seconds: float,
    config: TrainConfig,
    provenance: dict[str, Any] | None,
    writes: bool = True,
) -> None:
    """The resumable checkpoint after ``epoch`` epochs; ``seconds``: their wall time across resumes.

    Only when ``writes`` (this rank writes ``out``: `mmunlearn.distributed.writes_to`); then every rank
    waits until it is saved, so that no rank runs ahead of the checkpoint a resume would start from.
    """
    if not writes:
        dist.barrier()
        return
    training = {
        "run": run_id,
        "epoch": epoch,
        "epochs": config.epochs,
        "finished": epoch == config.epochs,
        "seconds": seconds,
    }
    save_checkpoint(out, model, provenance=provenance, train_state=optimizer_tensors(opt), extra={"training": training})
    dist.barrier()


# -- resumable work folders (forget, protect) -------------------------------------------------------
def global_rng_tensors(device: torch.device) -> dict[str, Tensor]:
    """The global torch RNG state (CPU, and ``device``'s when it is a GPU) as ``rng.*`` tensors."""
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_global_rng(tensors: dict[str, Tensor], device: torch.device) -> None:
    """Put back the global RNG state saved by `global_rng_tensors`."""
    torch.set_rng_state(tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


WORK_FORMAT = "mmunlearn-work/1"
WORK_STATE = "state.safetensors"


@dataclass(frozen=True)
class Saved:
    """The last state saved in a `WorkFolder`: how far the run got, its tensors and JSON-ready extras."""

    progress: int
    tensors: dict[str, Tensor]
    info: dict[str, Any]


@dataclass(frozen=True)
class WorkFolder:
    """The scratch folder of a resumable run (a forget or a protection): its last complete state.

    Layout: ``state.safetensors`` (every tensor; never pickle) and ``manifest.json`` (format, kind, the
    run's identity, progress, JSON extras and the state file's SHA-256), saved with the folder-commit
    protocol of `mmunlearn.fileio.commit_folder`: after a kill at any point the folder holds either the
    previous complete state or the new one.

    Attributes:
        path: the folder.
        kind: what runs in it (``"forget"``, ``"protect"``): a folder of another kind is refused.
        run: the run's identity (config, data and model fingerprints): only the same run resumes; the
            work of another run is replaced.
    """

    path: Path
    kind: str
    run: dict[str, Any]

    def _identity(self) -> str:
        return json.dumps(self.run, sort_keys=True, default=str)

    def load(self) -> Saved | None:
        """The last saved state, or None when nothing was saved yet.

        The unfinished work of another run of the same kind is not resumed: the run starts over and
        its first save replaces that work (a warning is logged).

        Raises:
            CheckpointError: the folder holds something else, or a damaged state.
        """
        if not (self.path / MANIFEST).is_file():
            return None
        manifest = read_json_manifest(self.path / MANIFEST, WORK_FORMAT, "work folder")
        if manifest.get("kind") != self.kind:
            raise CheckpointError(f"{self.path} is not the work folder of a {self.kind} run; choose another folder")
        if json.dumps(manifest.get("run"), sort_keys=True, default=str) != self._identity():
            log.warning("%s holds the unfinished work of another %s run; starting over", self.path, self.kind)
            return None  # its scratch state, not a result: the first save of this run replaces it
        return Saved(int(manifest["progress"]), self._read(manifest), dict(manifest.get("info", {})))

    def _read(self, manifest: dict[str, Any]) -> dict[str, Tensor]:
        digest = str(manifest.get("files", {}).get(WORK_STATE))
        path = resolve_file(self.path, WORK_STATE, digest)
        if not path.is_file() or sha256_file(path) != digest:
            raise CheckpointError(f"the work state {path} is missing or damaged; delete {self.path} to start over")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"cannot read {path}: {e}; delete {self.path} to start over") from e

    def save(self, progress: int, tensors: dict[str, Tensor], info: dict[str, Any] | None = None) -> None:
        """Save the state after ``progress`` units of work (epochs, outer iterations), crash-atomically."""
        data = tensors_to_bytes({k: v.detach().cpu() for k, v in tensors.items()})
        manifest = {
            "format": WORK_FORMAT,
            "kind": self.kind,
            "run": json.loads(self._identity()),
            "progress": progress,
            "info": info or {},
        }
        commit_folder(self.path, [(WORK_STATE, data)], manifest, owned=[WORK_STATE])

    def remove(self) -> None:
        """Delete the folder and everything in it (call once the run's result is safely saved)."""
        shutil.rmtree(self.path, ignore_errors=True)
