"""SSD: selective synaptic dampening, a training-free edit from two diagonal Fisher estimates
(docs/methods/ssd.md).

``[]_x`` is the mean over the batches of a set of the squared gradient of the batch-mean loss (per
batch, not per sample, as the authors' code computes it). With ``[]_Df`` on the forget set U and ``[]_D``
on the training data (the gold-standard set; with ``include_forget``, U and the gold-standard set
shuffled together, as in the paper), every weight element with ``[]_Df > alpha * []_D`` is multiplied by
``min(lam * []_D / []_Df, 1)``; the others are left alone. No optimizer step is taken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DivergenceError
from ..models.protocols import DualEncoderModel
from ..optim import weights_finite
from ..runtime import model_device, progress, to_device
from ..train import WorkFolder
from .base import UNLEARNERS, Run, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS, task_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSDConfig(UnlearnConfig):
    """Defaults: Foster et al.'s code (``forget_*_main.py``): alpha ("selection_weighting") = 10 (their
    ResNet18 value; ViT runs used 5-25), lambda ("dampening_constant") = 1, batch 64. Of the shared
    fields only ``batch_size`` (the batches both Fisher estimates are taken on) and ``seed`` (their
    order) are used: SSD takes no optimizer step, so ``epochs``, ``lr``, ``optimizer``, ``weight_decay``,
    ``grad_clip`` and ``retain_batch_size`` are accepted and ignored.

    Attributes:
        alpha: selection weighting: a weight element is dampened when its forget importance exceeds
            alpha times its importance on the training data (must be > 0).
        lam: dampening constant lambda: a selected element is multiplied by
            ``min(lam * []_D / []_Df, 1)`` (must be > 0).
        max_batches: at most this many batches of the training data D for ``[]_D`` (None: all of D, as
            the paper does).
        include_forget: D is U plus the gold-standard set, as in the paper (D_f is part of the training
            set); False (default): D is the gold-standard set alone. With D_f inside D the ratio
            ``[]_Df / []_D`` cannot exceed about ``1 / (f^2 + f(1-f)/batch_size)`` for a forget fraction f
            (about 12 at f = 0.25, batch 8), so for large requests alpha = 10 selects nothing.
        skip_scalars: leave parameters with at most one element alone (a dual encoder's learned
            temperature), as the SSD adaptation to CLIP in the SLUG code does; False dampens them too.
    """

    batch_size: int = 64
    alpha: float = 10.0
    lam: float = 1.0
    max_batches: int | None = None
    include_forget: bool = False
    skip_scalars: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        if not self.lam > 0:
            raise ConfigError(f"lam must be > 0, got {self.lam}")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"max_batches must be >= 1 or None, got {self.max_batches}")


def diagonal_fisher(model: nn.Module, losses: Iterable[Callable[[], Tensor]]) -> dict[str, Tensor]:
    """Mean over ``losses`` (one closure per batch) of the squared gradient of each, per weight element.

    Returns:
        parameter name -> tensor of its shape (zeros where a parameter got no gradient); every
        parameter that requires a gradient is present.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for loss_fn in losses:
        model.zero_grad(set_to_none=True)
        loss_fn().backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    return {n: t / max(count, 1) for n, t in total.items()}


def dampening_factors(forget: Tensor, full: Tensor, alpha: float, lam: float) -> Tensor:
    """SSD's per-element multiplier: ``min(lam * full / forget, 1)`` where ``forget > alpha * full``, else 1."""
    selected = forget > alpha * full
    ratio = (lam * full / forget.clamp_min(torch.finfo(forget.dtype).tiny)).clamp(max=1.0)
    return torch.where(selected, ratio, torch.ones_like(forget))


def shuffled_batches(n: int, batch_size: int, seed: int) -> list[Tensor]:
    """A seeded permutation of ``range(n)`` in batches of ``batch_size`` (the last may be smaller: every
    sample counts in an importance estimate)."""
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).split(batch_size))


@UNLEARNERS.register("ssd")
class SSD(Unlearner[SSDConfig, None]):
    """Dampen the weights far more important to the forget set than to the training data."""

    name = "ssd"
    paper = "Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening (AAAI 2024)"
    stage = "training-free"
    requires = MODEL_KINDS
    Config = SSDConfig

    def run(self, model: Any, run: Run[None], work: WorkFolder | None = None) -> None:
        """Both importances (model in eval mode), then one multiplicative edit; no optimizer, no checkpoint."""
        c = self.config
        forget, full = self.forget_losses(model, run), self.training_losses(model, run)
        bar = progress(total=len(forget) + len(full), desc=self.name, unit="batch", enabled=c.progress)
        try:
            model.eval()
            f_forget = diagonal_fisher(model, _ticking(forget, bar))
            f_full = diagonal_fisher(model, _ticking(full, bar))
        finally:
            bar.close()
        changed, total = self.dampen(model, f_forget, f_full)
        log.info("ssd: dampened %d of %d weight elements", changed, total)
        if not weights_finite(model):
            raise DivergenceError("ssd: the dampened weights are not finite; no model is returned (check the data)")

    def forget_losses(self, model: Any, run: Run[None]) -> list[Callable[[], Tensor]]:
        """One closure per batch of the forget set D_f = U: the task loss of its forgotten modalities."""
        n = len(run.data.unlearn)
        return [
            self._batch_loss(model, run, rows, n)
            for rows in shuffled_batches(n, self.config.batch_size, self.config.seed)
        ]

    def training_losses(self, model: Any, run: Run[None]) -> list[Callable[[], Tensor]]:
        """One closure per batch of the training data D, at most ``max_batches`` of them: the gold-standard
        set, or (``include_forget``) U and the gold-standard set shuffled together, as the paper's full
        training loader mixes the forget samples into its batches."""
        c, n = self.config, len(run.data.unlearn)
        first = 0 if c.include_forget else n  # rows below n are U's
        rows = torch.arange(first, n + len(run.data.gold_standard))
        idx = [rows[b] for b in shuffled_batches(len(rows), c.batch_size, c.seed + 1)][: c.max_batches]
        return [self._batch_loss(model, run, r, n) for r in idx]

    def _batch_loss(self, model: Any, run: Run[None], rows: Tensor, n_unlearn: int) -> Callable[[], Tensor]:
        """The loss of one batch of D (rows below ``n_unlearn`` are U's, the others the gold-standard
        set's): the sample-weighted mean of the task loss on its U samples and ``model.loss`` on its
        gold-standard samples (a dual encoder's: complete pairs only). Batches are built when called."""
        u_rows, g_rows = rows[rows < n_unlearn], rows[rows >= n_unlearn] - n_unlearn

        def loss() -> Tensor:
            device, parts, count = model_device(model), [], 0
            if len(u_rows):
                parts.append(len(u_rows) * task_loss(model, run, to_device(run.data.unlearn.batch(u_rows), device)))
                count += len(u_rows)
            if len(g_rows):
                gold = to_device(run.data.gold_standard.batch(g_rows), device)
                gold = complete_pairs(gold) if run.kind is DualEncoderModel else gold
                n_gold = len(next(iter(gold.values())))
                if n_gold:
                    parts.append(n_gold * model.loss(gold))
                    count += n_gold
            return torch.stack(parts).sum() / max(count, 1)

        return loss

    def dampen(self, model: nn.Module, f_forget: dict[str, Tensor], f_full: dict[str, Tensor]) -> tuple[int, int]:
        """Multiply every parameter by its `dampening_factors` in place: (elements changed, elements in all)."""
        c, changed, total = self.config, 0, 0
        with torch.no_grad():
            for n, p in model.named_parameters():
                total += p.numel()
                if n not in f_forget or (c.skip_scalars and p.numel() <= 1):
                    continue
                factor = dampening_factors(f_forget[n], f_full[n], c.alpha, c.lam)
                changed += int((factor < 1).sum())
                p.mul_(factor)
        return changed, total


def _ticking(losses: list[Callable[[], Tensor]], bar: Any) -> Iterable[Callable[[], Tensor]]:
    """``losses`` one by one, ticking the progress bar after each has been used."""
    for loss in losses:
        yield loss
        bar.update(1)
