"""The `Unlearner` base: validation, a seeded shared loop with a progress bar and a divergence guard.

A request splits the training set into the unlearn set U (all of its data, so that a method can see
what it must forget and what it must keep) and the retain set: the data a model retrained from
scratch may use (R, plus U with the forgotten modalities missing for a visual-only request). Methods
see U through `forget_view`: only the modalities to forget are present, so a model's fused logits on
it are the logits of exactly the data to forget (image-only logits for visual unlearning).

Gradient methods override only `loss`; the loop calls it phase by phase:

* ``"paired"``: one unlearn batch and one retain batch per step; an epoch is one pass over U, so the
  cost grows with |U|, not with the training-set size;
* ``"unlearn"``: a pass over U alone (``retain_batch`` is None);
* ``"retain"``: a pass over the retain set alone (``unlearn_batch`` is None).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.core import MultimodalDataset
from ..errors import ConfigError, DataError, DivergenceError
from ..models import MultimodalModel
from ..models.base import make_config
from ..registry import Registry
from ..train import epoch_batches, seeded

log = logging.getLogger(__name__)
Batch = dict[str, Tensor]


@dataclass(frozen=True)
class UnlearnConfig:
    """Knobs every method shares (methods extend this dataclass with their own fields).

    Attributes:
        epochs: passes of the method's phases.
        lr: learning rate of the method's optimizer.
        batch_size: unlearn-set batch size.
        retain_batch_size: retain-set batch size.
        optimizer: ``"adamw"`` or ``"sgd"`` (SGD with momentum 0.9, as in the SalUn/Sparse code).
        weight_decay: optimizer weight decay.
        grad_clip: max gradient norm (None = off).
        seed: seeds the data order and every random draw.
        progress: progress bar (only on a terminal).
    """

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    retain_batch_size: int = 128
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.batch_size < 1 or self.retain_batch_size < 1:
            raise ConfigError("batch sizes must be >= 1")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")


@dataclass
class UnlearnContext:
    """Everything a method may look at besides the model (passed to `Unlearner.prepare` and `loss`)."""

    unlearn: MultimodalDataset
    retain: MultimodalDataset | None
    modalities: frozenset[str]
    original: MultimodalModel | None
    validation: MultimodalDataset | None


class Unlearner:
    """Base of every unlearning method (subclass, set the class attributes, register in `UNLEARNERS`).

    Attributes:
        name: registry key (= file name).
        paper: citation of the method.
        requires_retain: the method needs the retain set.
        requires_original: the method needs a frozen copy of the original model.
        supported_models: model kinds it can edit.
        Config: the method's frozen config dataclass.
        phases: the loop's phases per epoch (see the module docstring).
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    requires_retain: ClassVar[bool] = True
    requires_original: ClassVar[bool] = False
    supported_models: ClassVar[tuple[str, ...]] = ("multimodal-classifier",)
    Config: ClassVar[type[UnlearnConfig]] = UnlearnConfig
    phases: ClassVar[tuple[str, ...]] = ("paired",)

    def __init__(self, **overrides: Any) -> None:
        self.config = make_config(self.Config, overrides)
        self.ctx: UnlearnContext | None = None

    # -- public entry point ---------------------------------------------------------------------
    def unlearn(
        self,
        model: MultimodalModel,
        unlearn_set: MultimodalDataset,
        retain_set: MultimodalDataset | None,
        *,
        original: MultimodalModel | None = None,
        modalities: Iterable[str] = ("image",),
        validation: MultimodalDataset | None = None,
    ) -> MultimodalModel:
        """Return an edited copy of ``model`` that has forgotten ``modalities`` of ``unlearn_set``.

        Args:
            model: the trained model (left untouched).
            unlearn_set: U, with all of its modalities.
            retain_set: what may be kept (R, plus U without the forgotten modalities for a partial request).
            original: frozen original model (defaults to a copy of ``model`` for methods that need one).
            modalities: the modalities to forget.
            validation: data from the training distribution that the original never trained on.

        Raises:
            DataError / ConfigError: invalid inputs (checked before any work starts).
            DivergenceError: the loss became NaN/inf; nothing is returned.
        """
        mods = frozenset(modalities)
        self._validate(model, unlearn_set, retain_set, mods)
        # copies, so that neither the caller's model nor its original change (not even requires_grad)
        work = copy.deepcopy(model).requires_grad_(True)
        frozen = copy.deepcopy(original if original is not None else model) if self.requires_original else None
        if frozen is not None:
            frozen.eval().requires_grad_(False)
        self.ctx = UnlearnContext(unlearn_set, retain_set, mods, frozen, validation)
        with seeded(self.config.seed):
            self.prepare(work)
            self.run(work)
        return work

    def _validate(
        self, model: MultimodalModel, unlearn: MultimodalDataset, retain: MultimodalDataset | None, mods: frozenset[str]
    ) -> None:
        if model.kind not in self.supported_models:
            raise ConfigError(f"{self.name} supports {list(self.supported_models)}, not {model.kind!r}")
        if len(unlearn) == 0:
            raise DataError("the unlearn set is empty: nothing to forget")
        lacking = sorted(mods - set(model.modalities))
        if lacking:
            raise DataError(f"cannot forget modality {lacking}: the model has {list(model.modalities)}")
        if self.requires_retain and (retain is None or len(retain) == 0):
            raise DataError(f"{self.name} needs the retain set, but none was given")

    # -- hooks ------------------------------------------------------------------------------------
    def prepare(self, model: MultimodalModel) -> None:
        """Work done once before the loop (masks, targets...). Default: nothing."""

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        """The method's objective on one step (see the phases in the module docstring)."""
        raise NotImplementedError

    def after_step(self, model: MultimodalModel) -> None:
        """Called after every optimizer step (e.g. to re-apply a mask). Default: nothing."""

    def on_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        """Called before the first phase of every epoch. Default: nothing."""

    def phases_of(self, epoch: int) -> tuple[str, ...]:
        """The phases of ``epoch`` (0-based). Default: the class attribute ``phases``."""
        return self.phases

    # -- views ------------------------------------------------------------------------------------
    def forget_view(self, batch: Batch) -> Batch:
        """The batch with only the modalities to forget present (the others marked missing)."""
        return present_only(batch, self.ctx.modalities if self.ctx else frozenset())

    # -- the shared loop ------------------------------------------------------------------------
    def make_optimizer(self, model: MultimodalModel) -> torch.optim.Optimizer:
        """AdamW or SGD (momentum 0.9) over the trainable parameters."""
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)

    def run(self, model: MultimodalModel) -> None:
        """The shared loop: every phase of every epoch, one optimizer step per batch."""
        opt = self.make_optimizer(model)
        plan = [(e, p) for e in range(self.config.epochs) for p in self.phases_of(e)]
        total = sum(self.steps_per_epoch(p, e) for e, p in plan)
        bar = tqdm(total=total, desc=self.name, unit="step", disable=None if self.config.progress else True)
        good = copy.deepcopy(model.state_dict())
        device = next(model.parameters()).device
        try:
            for epoch, phase in plan:
                if phase == self.phases_of(epoch)[0]:
                    self.on_epoch_start(model, epoch)
                for u, r in self._batches(phase, epoch, device):
                    self._step(model, opt, u, r, epoch, good)
                    bar.update(1)
                good = copy.deepcopy(model.state_dict())
        finally:
            bar.close()

    def _step(
        self,
        model: MultimodalModel,
        opt: torch.optim.Optimizer,
        u: Batch | None,
        r: Batch | None,
        epoch: int,
        good: dict[str, Tensor],
    ) -> None:
        model.train()
        loss = self.loss(model, u, r)
        if not torch.isfinite(loss):
            model.load_state_dict(good)
            raise DivergenceError(
                f"{self.name}: the loss became {float(loss.detach())} in epoch {epoch + 1}; the last good weights were "
                "restored and no model is returned (try a lower lr)"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        opt.step()
        self.after_step(model)

    def steps_per_epoch(self, phase: str, epoch: int = 0) -> int:
        """Optimizer steps in one phase of one epoch."""
        u_idx, r_idx = self._index_batches(phase, epoch)
        return len(r_idx) if phase == "retain" else len(u_idx)

    def _index_batches(self, phase: str, epoch: int) -> tuple[list[Tensor], list[Tensor]]:
        """Unlearn-set and retain-set index batches of one phase (the retain ones cycle in "paired")."""
        ctx, c = self.ctx, self.config
        assert ctx is not None
        u_idx = [] if phase == "retain" else epoch_batches(len(ctx.unlearn), c.batch_size, c.seed, epoch)
        if phase == "unlearn":
            return u_idx, []
        if ctx.retain is None:
            raise DataError(f"{self.name}: phase {phase!r} needs the retain set")
        r_idx = epoch_batches(len(ctx.retain), c.retain_batch_size, c.seed + 7919, epoch)
        if phase == "paired":
            r_idx = [r_idx[i % len(r_idx)] for i in range(len(u_idx))]
        return u_idx, r_idx

    def _batches(self, phase: str, epoch: int, device: torch.device) -> Iterator[tuple[Batch | None, Batch | None]]:
        ctx = self.ctx
        assert ctx is not None
        u_idx, r_idx = self._index_batches(phase, epoch)
        if phase == "unlearn":
            for i in u_idx:
                yield _to(ctx.unlearn.batch(i), device), None
        elif phase == "retain":
            for j in r_idx:
                yield None, _to(ctx.retain.batch(j), device)  # type: ignore[union-attr]
        else:
            for i, j in zip(u_idx, r_idx, strict=True):
                yield _to(ctx.unlearn.batch(i), device), _to(ctx.retain.batch(j), device)  # type: ignore[union-attr]


def present_only(batch: Batch, modalities: Iterable[str]) -> Batch:
    """A shallow copy of ``batch`` in which every modality outside ``modalities`` is marked missing."""
    keep = set(modalities)
    out = dict(batch)
    for key in batch:
        if key.startswith("present_") and key[len("present_") :] not in keep:
            out[key] = torch.zeros_like(batch[key])
    return out


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def config_fields(method: type[Unlearner]) -> dict[str, Any]:
    """The documented defaults of a method's config (for method cards and ``--set`` help)."""
    return {f.name: f.default for f in dataclasses.fields(method.Config)}


UNLEARNERS: Registry[Unlearner] = Registry("unlearner")
