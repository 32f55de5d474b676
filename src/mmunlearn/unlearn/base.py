"""The `Unlearner` contract: what a method is given, what it returns, and the shared loop.

A request splits the training set into the unlearn set U (all of its data, so that a method can see
what it must forget and what it must keep), the true retain set R (the samples the request does not
touch) and the gold-standard set: what a model retrained from scratch may use (R, plus U with the
forgotten modalities missing for a visual-only request). `UnlearnData` carries them, frozen.

Methods see U through `Run.forget_view`: only the modalities to forget are present, so a model's fused
logits on it are the logits of exactly the data to forget (image-only logits for visual unlearning).

A method is stateless: ``Unlearner.unlearn(model, data)`` copies the model, calls ``prepare(model, run)``
once to build the run's state (masks, targets...), and runs the shared loop, which hands ``loss`` a `Run`
(data, frozen original, state) and a `Step` (batches, epoch, step counter). Gradient methods override
only `loss`; the loop calls it phase by phase:

* ``"paired"``: one unlearn batch and one retain batch per step; an epoch is one pass over U, so the
  cost grows with |U|, not with the training-set size;
* ``"unlearn"``: a pass over U alone (``step.retain`` is None);
* ``"retain"``: a pass over the gold-standard set alone (``step.unlearn`` is None).

The data order of epoch ``e`` comes from generators seeded by ``(seed, e)``; every other random draw
(random labels, pairings, the model's modality dropout) from the global RNG, seeded once by ``seed``
around ``prepare`` and the loop. With a work folder the loop saves, after every epoch, the weights, the
optimizer state, the global RNG state, the method's state tensors and the epoch; a run killed in epoch
``e`` and started again rebuilds the state with ``prepare`` (same seed, same draws), puts the saved
tensors back and resumes after epoch ``e - 1``, ending with bit-identical weights.

The divergence guard checks the loss before every step, the weights after it, and the model's outputs
after the last step (which no later loss checks); on NaN/inf it restores the weights of the start of the
epoch and raises a `DivergenceError` that blames the data when the batch was not finite, else the lr.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

import torch
from torch import Tensor, nn

from .. import distributed as dist
from ..checkpoint import state_sha256
from ..configs import config_defaults, make_config
from ..data.core import MultimodalDataset, data_fingerprint
from ..data.request import ForgetRequest
from ..errors import ConfigError, DataError, DivergenceError
from ..metrics.scenario_a import forget_modality_of
from ..models.protocols import CaptionerModel, Classifier, DualEncoderModel, require
from ..optim import (
    OptimConfig,
    batch_finite,
    divergence_hint,
    load_optimizer_tensors,
    optimizer_for,
    optimizer_step,
    optimizer_tensors,
    weights_finite,
)
from ..registry import Registry
from ..runtime import Batch, epoch_batches, model_device, progress, seeded, to_device
from ..train import WorkFolder, global_rng_tensors, outputs_finite, restore_global_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnlearnConfig(OptimConfig):
    """Knobs every method shares (methods extend this dataclass with their own fields).

    Attributes:
        batch_size: unlearn-set batch size.
        retain_batch_size: gold-standard-set batch size.
    """

    retain_batch_size: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retain_batch_size < 1:
            raise ConfigError(f"retain_batch_size must be >= 1, got {self.retain_batch_size}")


@dataclass(frozen=True)
class UnlearnData:
    """The data of one forget request, as every method receives it.

    Attributes:
        unlearn: U, the samples of the request with all of their modalities.
        gold_standard: what a model retrained from scratch trains on (R plus U without the forgotten
            modalities); the loop's retain batches come from it.
        modalities: the modalities to forget.
        retain: R, the training samples the request does not touch (for metrics).
        validation: data of the training distribution the original never trained on.
        concept: the concept of a concept request (None otherwise).
    """

    unlearn: MultimodalDataset
    gold_standard: MultimodalDataset
    modalities: frozenset[str] = frozenset({"image"})
    retain: MultimodalDataset | None = None
    validation: MultimodalDataset | None = None
    concept: str | None = None

    @classmethod
    def from_request(
        cls, request: ForgetRequest, train: MultimodalDataset, validation: MultimodalDataset | None = None
    ) -> UnlearnData:
        """U, R and the gold-standard set of ``request`` on the training set ``train``, built once."""
        return cls(
            request.unlearn_set(train),
            request.gold_standard_set(train),
            frozenset(request.modalities),
            request.retain_set(train),
            validation,
            request.concept,
        )

    @property
    def forget_modality(self) -> str:
        """The modality the forgetting metrics look at: the visual one (image, else video) when it is forgotten."""
        return forget_modality_of(self.modalities)


S = TypeVar("S")
C = TypeVar("C", bound=OptimConfig)


@dataclass
class Run(Generic[S]):
    """One call of `Unlearner.unlearn`: its data, the frozen original (if the method asked), its state and
    the model kind: the first protocol of the method's ``requires`` that the model satisfies."""

    data: UnlearnData
    original: Any
    state: S
    kind: type = Classifier

    def forget_view(self, batch: Batch) -> Batch:
        """The batch with only the modalities to forget present (the others marked missing)."""
        return present_only(batch, self.data.modalities)


@dataclass(frozen=True)
class Step:
    """One optimiser step of the loop: its batches and where it stands."""

    unlearn: Batch | None
    retain: Batch | None
    epoch: int
    index: int = 0
    total: int = 1


class Unlearner(Generic[C, S]):
    """Base of every unlearning method (subclass, set the class attributes, register in `UNLEARNERS`).

    Attributes:
        name: registry key (= file name).
        paper: citation of the method.
        stage: the intervention stage of the survey, one of `mmunlearn.stages.STAGES`
            (``"training-time"`` for gradient methods that may update every weight).
        requires: the model protocols the method can edit (see `mmunlearn.models.protocols`).
        requires_retain: the method needs the gold-standard set.
        requires_original: the method needs a frozen copy of the original model.
        Config: the method's frozen config dataclass.
        phases: the loop's phases per epoch (see the module docstring).
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    stage: ClassVar[str] = "training-time"
    requires: ClassVar[tuple[type, ...]] = (Classifier,)
    requires_retain: ClassVar[bool] = True
    requires_original: ClassVar[bool] = False
    Config: ClassVar[type[OptimConfig]] = UnlearnConfig
    phases: ClassVar[tuple[str, ...]] = ("paired",)
    config: C

    def __init__(self, **overrides: Any) -> None:
        self.config = make_config(self.Config, overrides)  # type: ignore[assignment]

    # -- public entry point ---------------------------------------------------------------------
    def unlearn(
        self, model: Any, data: UnlearnData, original: Any = None, work_dir: str | os.PathLike[str] | None = None
    ) -> Any:
        """Return an edited copy of ``model`` that has forgotten ``data.modalities`` of ``data.unlearn``.

        Args:
            model: the trained model (left untouched, train/eval mode included).
            data: the request's data (`UnlearnData`).
            original: the frozen original for methods that need one (default: ``model`` itself).
            work_dir: if given, the state is saved there after every epoch and a run of the same
                method, config, data and model found there is resumed (bit-identically; another run's
                work is replaced); the folder is left in place (the caller deletes it once the result
                is safe).

        Returns:
            The new model, in the train/eval mode ``model`` was in.

        Raises:
            ConfigError: the model lacks a capability the method needs (the message names it).
            DataError: invalid data (checked before any work starts).
            DivergenceError: the loss, the weights or the outputs became NaN/inf; nothing is returned.
            CheckpointError: ``work_dir`` holds something other than this kind of work, or a damaged state.
        """
        kind = self.validate(model, data)
        # copies, so that neither the caller's model nor its original change (not even requires_grad)
        work = copy.deepcopy(model).requires_grad_(True)
        frozen = copy.deepcopy(original if original is not None else model) if self.requires_original else None
        if frozen is not None:
            frozen.eval().requires_grad_(False)
        folder = None if work_dir is None else WorkFolder(Path(work_dir), "forget", self.identity(model, data, frozen))
        with seeded(self.config.seed):
            run: Run[S] = Run(data, frozen, None, kind)  # type: ignore[arg-type]
            run.state = self.prepare(work, run)
            self.run(work, run, folder)
        return work.train(model.training)

    def identity(self, model: Any, data: UnlearnData, original: Any) -> dict[str, Any]:
        """What decides the result of a run (a work folder resumes only the same run)."""
        config = dataclasses.asdict(self.config)
        config.pop("progress", None)
        sets = {"unlearn": data.unlearn, "gold_standard": data.gold_standard, "validation": data.validation}
        return {
            "method": self.name,
            "config": config,
            "data": {k: None if v is None else data_fingerprint(v) for k, v in sets.items()},
            "modalities": sorted(data.modalities),
            "model": state_sha256(model),
            "original": None if original is None else state_sha256(original),
        }

    def validate(self, model: Any, data: UnlearnData) -> type:
        """Check the model's capabilities and the data before any work; return the model's kind (protocol)."""
        kind = require(model, self.requires, f"unlearner {self.name!r}")
        if len(data.unlearn) == 0:
            raise DataError("the unlearn set is empty: nothing to forget")
        has = (
            ("image", "text") if kind in (DualEncoderModel, CaptionerModel) else tuple(getattr(model, "modalities", ()))
        )
        lacking = sorted(data.modalities - set(has))
        if lacking:
            raise DataError(f"cannot forget modality {lacking}: the model has {list(has)}")
        if self.requires_retain and len(data.gold_standard) == 0:
            raise DataError(f"{self.name} needs data to keep, but the gold-standard set is empty")
        return kind

    # -- hooks ------------------------------------------------------------------------------------
    def prepare(self, model: Any, run: Run[Any]) -> S:
        """The run's initial state (masks, targets...), built once before the loop from the run's data,
        original and kind (``run.state`` is still None). Default: None."""
        return None  # type: ignore[return-value]

    def loss(self, model: Any, run: Run[S], step: Step) -> Tensor:
        """The method's objective on one step (see the phases in the module docstring)."""
        raise NotImplementedError

    def after_step(self, model: Any, run: Run[S]) -> None:
        """Called after every optimizer step (e.g. to re-apply a mask). Default: nothing."""

    def on_epoch_start(self, model: Any, run: Run[S], epoch: int) -> None:
        """Called before the first phase of every epoch. Default: nothing."""

    def phases_of(self, epoch: int) -> tuple[str, ...]:
        """The phases of ``epoch`` (0-based). Default: the class attribute ``phases``."""
        return self.phases

    # -- the shared loop ------------------------------------------------------------------------
    def run(self, model: nn.Module, run: Run[S], work: WorkFolder | None = None) -> None:
        """The shared loop: every phase of every epoch, one optimizer step per batch, epoch by epoch.

        Args:
            model: the model to edit (in place).
            run: the run's data, original and state.
            work: where to save after every epoch and resume from (None: no checkpoints).

        Under torchrun (`mmunlearn.distributed`) every rank runs this with the same model, run and state:
        each computes the loss on its shard of every global batch through DDP (gradients averaged), the
        global RNG is rank 0's at the start of every epoch (draws that build shared state agree), the
        work folder is written by rank 0 (or by a rank whose folder is private) and resumed from rank 0's.
        """
        c = self.config
        opt = optimizer_for(model, c)
        steps = [sum(self.steps_per_phase(run.data, p, e) for p in self.phases_of(e)) for e in range(c.epochs)]
        start, before = self._resume(work, model, opt, run)
        writes = work is not None and dist.writes_to(work.path)
        enabled = c.progress and dist.is_main()
        bar = progress(total=sum(steps), initial=sum(steps[:start]), desc=self.name, unit="step", enabled=enabled)
        t0 = time.perf_counter()
        try:
            for epoch in range(start, c.epochs):
                dist.sync_rng()
                self._epoch(model, run, opt, epoch, (sum(steps[:epoch]), sum(steps)), bar)
                if work is not None:
                    seconds = before + time.perf_counter() - t0  # of every epoch so far, across resumes
                    self._save_work(work, writes, epoch + 1, model, opt, run, seconds)
        finally:
            bar.close()

    def _save_work(
        self,
        work: WorkFolder,
        writes: bool,
        epoch: int,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        run: Run[S],
        seconds: float,
    ) -> None:
        """Save the state after ``epoch`` epochs into ``work`` (if this rank writes it); every rank then waits."""
        if writes:
            work.save(epoch, self._state_to_save(model, opt, run), {"seconds": seconds})
        dist.barrier()

    def _epoch(
        self, model: nn.Module, run: Run[S], opt: torch.optim.Optimizer, epoch: int, at: tuple[int, int], bar: Any
    ) -> None:
        """One epoch (every phase) under the divergence guard; ``at``: (steps before it, steps in all)."""
        good = copy.deepcopy(model.state_dict())
        device = model_device(model)
        index, total = at
        u: Batch | None = None
        r: Batch | None = None
        objective = dist.data_parallel(model, self.loss) if dist.active() else None
        for p, phase in enumerate(self.phases_of(epoch)):
            if p == 0:
                self.on_epoch_start(model, run, epoch)
            for (u, r), share in self._batches_with_shares(run.data, phase, epoch, device):
                model.train()
                step = Step(u, r, epoch, index, total)
                if objective is None:
                    loss = self.loss(model, run, step)
                    if not torch.isfinite(loss):
                        self._diverged(model, good, f"the loss became {float(loss.detach())}", epoch, u, r)
                else:
                    loss = objective(run, step)
                    value = dist.global_mean(loss, *share)
                    if not math.isfinite(value):
                        self._diverged(model, good, f"the loss became {value}", epoch, u, r)
                    loss = loss * dist.shard_weight(*share)
                optimizer_step(model, opt, loss, self.config.grad_clip)
                self.after_step(model, run)
                if not weights_finite(model):
                    self._diverged(model, good, "the weights became NaN/inf", epoch, u, r)
                index += 1
                bar.update(1)
        del objective  # DDP's hooks go with it
        last = epoch + 1 == self.config.epochs
        if last and not dist.all_true(outputs_finite(model, u, r)):  # type: ignore[arg-type]
            self._diverged(model, good, "the model's outputs became NaN/inf", epoch, u, r)

    def _diverged(
        self, model: nn.Module, good: dict[str, Tensor], what: str, epoch: int, u: Batch | None, r: Batch | None
    ) -> NoReturn:
        """Restore the weights of the start of the epoch and raise the `DivergenceError`."""
        model.load_state_dict(good)
        raise DivergenceError(
            f"{self.name}: {what} in epoch {epoch + 1}; the last good weights were restored and no model is "
            f"returned ({divergence_hint(batch_finite(u, r))})"
        )

    def _state_to_save(self, model: nn.Module, opt: torch.optim.Optimizer, run: Run[S]) -> dict[str, Tensor]:
        """Weights (``model.*``), optimizer (``opt.*``), global RNG (``rng.*``) and method state (``state*``)."""
        weights = {f"model.{k}": v for k, v in model.state_dict().items()}
        rng = global_rng_tensors(model_device(model))
        return {**weights, **optimizer_tensors(opt), **rng, **state_tensors(run.state)}

    def _resume(
        self, work: WorkFolder | None, model: nn.Module, opt: torch.optim.Optimizer, run: Run[S]
    ) -> tuple[int, float]:
        """Load the last saved epoch of the same run from ``work``: (epoch to start from, seconds spent)."""
        if work is None:
            return 0, 0.0
        saved = dist.share(work.load) if dist.active() else work.load()
        if saved is None:
            return 0, 0.0
        t = saved.tensors
        model.load_state_dict({k[len("model.") :]: v for k, v in t.items() if k.startswith("model.")})
        load_optimizer_tensors(opt, t)
        restore_global_rng(t, model_device(model))
        run.state = with_state_tensors(run.state, t, model_device(model))
        log.info("%s: resuming %s after epoch %d", self.name, work.path, saved.progress)
        return saved.progress, float(saved.info.get("seconds", 0.0))

    def steps_per_phase(self, data: UnlearnData, phase: str, epoch: int = 0) -> int:
        """Optimizer steps in one phase of one epoch."""
        u_idx, r_idx = self._index_batches(data, phase, epoch)
        return len(r_idx) if phase == "retain" else len(u_idx)

    def _index_batches(self, data: UnlearnData, phase: str, epoch: int) -> tuple[list[Tensor], list[Tensor]]:
        """Unlearn-set and gold-standard index batches of one phase (the latter cycle in "paired")."""
        c = self.config
        u_idx = [] if phase == "retain" else epoch_batches(len(data.unlearn), c.batch_size, c.seed, epoch)
        if phase == "unlearn":
            return u_idx, []
        retain_batch = getattr(c, "retain_batch_size", c.batch_size)
        r_idx = epoch_batches(len(data.gold_standard), retain_batch, c.seed + 7919, epoch)
        if phase == "paired":
            r_idx = [r_idx[i % len(r_idx)] for i in range(len(u_idx))]
        return u_idx, r_idx

    def _batches_with_shares(
        self, data: UnlearnData, phase: str, epoch: int, device: torch.device
    ) -> Iterator[tuple[tuple[Batch | None, Batch | None], tuple[int, int]]]:
        """`_batches`, each with (this rank's samples, the global batch's) of its main batch (U's, else R's)."""
        u_idx, r_idx = self._index_batches(data, phase, epoch)
        main = r_idx if phase == "retain" else u_idx
        sizes = [(len(dist.shard(i)), len(i)) if dist.active() else (len(i), len(i)) for i in main]
        yield from zip(self._batches(data, phase, epoch, device), sizes, strict=True)

    def _batches(
        self, data: UnlearnData, phase: str, epoch: int, device: torch.device
    ) -> Iterator[tuple[Batch | None, Batch | None]]:
        """The (unlearn, retain) batches of one phase; under torchrun this rank's shard of each."""
        u_idx, r_idx = self._index_batches(data, phase, epoch)
        if dist.active():
            u_idx, r_idx = [dist.shard(i) for i in u_idx], [dist.shard(j) for j in r_idx]
        if phase == "unlearn":
            for i in u_idx:
                yield to_device(data.unlearn.batch(i), device), None
        elif phase == "retain":
            for j in r_idx:
                yield None, to_device(data.gold_standard.batch(j), device)
        else:
            for i, j in zip(u_idx, r_idx, strict=True):
                yield to_device(data.unlearn.batch(i), device), to_device(data.gold_standard.batch(j), device)


def state_tensors(state: Any) -> dict[str, Tensor]:
    """The tensors of a method's run state, flat for safetensors (other values are rebuilt by ``prepare``).

    A tensor is ``"state"``, a dict of tensors ``"state:<key>"``; in a dataclass state, field ``f`` is
    ``"state.f"`` or ``"state.f:<key>"``.
    """
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        out: dict[str, Tensor] = {}
        for f in dataclasses.fields(state):
            out |= _flat(f"state.{f.name}", getattr(state, f.name))
        return out
    return _flat("state", state)


def _flat(prefix: str, value: Any) -> dict[str, Tensor]:
    if isinstance(value, Tensor):
        return {prefix: value}
    if isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values()):
        return {f"{prefix}:{k}": v for k, v in value.items()}
    return {}


def with_state_tensors(state: Any, tensors: dict[str, Tensor], device: torch.device) -> Any:
    """``state`` (as ``prepare`` built it) with the tensors saved by `state_tensors` put back on ``device``."""
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        fields = [f for f in dataclasses.fields(state) if f.init]
        changes = {f.name: _unflat(f"state.{f.name}", getattr(state, f.name), tensors, device) for f in fields}
        return dataclasses.replace(state, **changes)
    return _unflat("state", state, tensors, device)


def _unflat(prefix: str, current: Any, tensors: dict[str, Tensor], device: torch.device) -> Any:
    if prefix in tensors:
        return tensors[prefix].to(device)
    items = {k[len(prefix) + 1 :]: v.to(device) for k, v in tensors.items() if k.startswith(f"{prefix}:")}
    return items or current


def present_only(batch: Batch, modalities: Iterable[str]) -> Batch:
    """A shallow copy of ``batch`` in which every modality outside ``modalities`` is marked missing."""
    keep = set(modalities)
    out = dict(batch)
    for key in batch:
        if key.startswith("present_") and key[len("present_") :] not in keep:
            out[key] = torch.zeros_like(batch[key])
    return out


def config_fields(method: type[Unlearner[Any, Any]]) -> dict[str, Any]:
    """The documented defaults of a method's config (for method cards and ``--set`` help)."""
    return config_defaults(method.Config)


UNLEARNERS: Registry[Unlearner[Any, Any]] = Registry("unlearner")
