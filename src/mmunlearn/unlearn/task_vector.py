"""Task-vector negation: fine-tune a copy on the data to forget, subtract the scaled difference
(docs/methods/task_vector.md).

``tau = theta_ft - theta_0`` over every floating-point state entry, ``theta = theta_0 - s * tau``; the
scale s is chosen from a grid on held-out data: among the scales that keep the accuracy on the data
to keep within ``tolerance`` of the original's, the smallest whose U task loss reaches the original's
task loss on the validation split, else the largest such scale.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.protocols import DualEncoderModel
from ..optim import check_weights, checked_step, optimizer_for
from ..runtime import epoch_batches, eval_mode, model_device, progress, to_device
from ..train import WorkFolder
from .base import UNLEARNERS, Run, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS, output_logits, task_loss
from .subspace_edit import mean_task_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskVectorConfig(UnlearnConfig):
    """Defaults: Ilharco et al. fine-tune with AdamW (lr 1e-5, wd 0.1, batch 128, 4-76 epochs) and pick
    the scale on a 0-1 grid (step 0.05) as the lowest target accuracy with the control accuracy at least
    0.95 x the original's (``find_optimal_coef``). Here: the fine-tune runs ``epochs`` passes over U at
    ``lr`` with ``batch_size``, ``optimizer``, ``weight_decay`` and ``grad_clip`` (every shared field is
    used; ``retain_batch_size`` sizes the control batches); 5 epochs at the shared default lr 1e-3 are
    ours, for this project's small models trained at 2e-3.

    Attributes:
        scales: the scaling coefficients tried, increasing.
        tolerance: a scale is admissible when the accuracy on the data to keep is at least
            ``(1 - tolerance)`` x the original's (the paper's 0.95 is tolerance 0.05).
        control_batches: at most this many gold-standard batches (of ``retain_batch_size``) measure that
            accuracy (None: all of them).
    """

    scales: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    tolerance: float = 0.05
    control_batches: int | None = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scales or any(s <= 0 for s in self.scales) or list(self.scales) != sorted(set(self.scales)):
            raise ConfigError(f"scales must be increasing positive numbers, got {list(self.scales)}")
        if not 0 <= self.tolerance <= 1:
            raise ConfigError(f"tolerance must be in [0, 1], got {self.tolerance}")
        if self.control_batches is not None and self.control_batches < 1:
            raise ConfigError(f"control_batches must be >= 1 or None, got {self.control_batches}")


def task_vector(original: dict[str, Tensor], finetuned: dict[str, Tensor]) -> dict[str, Tensor]:
    """``tau = theta_ft - theta_0`` for every floating-point entry of the state dicts (others skipped)."""
    return {k: finetuned[k] - v for k, v in original.items() if v.is_floating_point()}


def negated(original: dict[str, Tensor], tau: dict[str, Tensor], scale: float) -> dict[str, Tensor]:
    """``theta_0 - scale * tau`` for the entries of ``tau``; the other entries of ``original`` unchanged."""
    return {k: v - scale * tau[k] if k in tau else v for k, v in original.items()}


def fine_tune(model: nn.Module, run: Run[Any], config: TaskVectorConfig, bar: Any) -> nn.Module:
    """A copy of ``model`` after ``config.epochs`` passes of gradient descent on U's task loss.

    The copy stays in eval mode, so normalisation statistics (buffers) do not move: tau lives in the
    weights, and negating a running variance could make it negative.

    Raises:
        DivergenceError: the loss or the weights became NaN/inf.
    """
    tuned = copy.deepcopy(model).eval()
    opt = optimizer_for(tuned, config)
    u, device = run.data.unlearn, model_device(model)
    for epoch in range(config.epochs):
        for idx in epoch_batches(len(u), config.batch_size, config.seed, epoch):
            batch = to_device(u.batch(idx), device)
            loss = task_loss(tuned, run, batch)
            checked_step(tuned, opt, loss, config.grad_clip, "task_vector: the fine-tuning")
            bar.update(1)
        check_weights(tuned, "task_vector: the fine-tuned")
    return tuned


def control_accuracy(model: Any, run: Run[Any], batches: list[Tensor]) -> float:
    """Accuracy of the model's outputs on gold-standard batches: fused class accuracy, or a dual
    encoder's in-batch retrieval accuracy in both directions (complete pairs only)."""
    device, hits, total = model_device(model), 0, 0
    with eval_mode(model):
        for idx in batches:
            batch = to_device(run.data.gold_standard.batch(idx), device)
            if run.kind is DualEncoderModel:
                batch = complete_pairs(batch)
                n = len(batch["image"])
                target = torch.arange(n, device=device).repeat(2)
            else:
                target = batch["label"]
            if len(target):
                hits += int((output_logits(model, run, batch).argmax(1) == target).sum())
                total += len(target)
    return hits / max(total, 1)


@UNLEARNERS.register("task_vector")
class TaskVector(Unlearner[TaskVectorConfig, None]):
    """Subtract a scaled task vector of U (fine-tuned minus original weights); scale chosen on held-out data."""

    name = "task_vector"
    paper = "Ilharco et al., Editing Models with Task Arithmetic (ICLR 2023), task-vector negation"
    stage = "training-free"
    requires = MODEL_KINDS
    Config = TaskVectorConfig

    def run(self, model: Any, run: Run[None], work: WorkFolder | None = None) -> None:
        """Fine-tune a copy on U, then set ``model`` to ``theta_0 - s * tau`` with the chosen scale."""
        c = self.config
        steps = sum(len(epoch_batches(len(run.data.unlearn), c.batch_size, c.seed, e)) for e in range(c.epochs))
        bar = progress(total=steps + len(c.scales), desc=self.name, unit="step", enabled=c.progress)
        try:
            theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
            tau = task_vector(theta0, fine_tune(model, run, c, bar).state_dict())
            scale = self.choose_scale(model, run, theta0, tau, bar)
        finally:
            bar.close()
        model.load_state_dict(negated(theta0, tau, scale))
        log.info("task_vector: theta_0 - %g * tau", scale)

    def choose_scale(
        self, model: Any, run: Run[None], theta0: dict[str, Tensor], tau: dict[str, Tensor], bar: Any
    ) -> float:
        """Among the admissible scales (control accuracy within ``tolerance``), the smallest whose U task
        loss reaches the original's validation task loss, else the largest admissible; the smallest
        scale (with a warning) when none is admissible. Leaves ``model`` at the last scale tried."""
        c, val = self.config, run.data.validation
        control = epoch_batches(len(run.data.gold_standard), c.retain_batch_size, c.seed + 7919, 0)
        control = control[: c.control_batches]
        floor = (1 - c.tolerance) * control_accuracy(model, run, control)
        target = None if val is None or len(val) == 0 else mean_task_loss(model, run, val, c.batch_size, c.seed)
        if target is None:
            log.warning("task_vector: no validation split given; taking the largest admissible scale")
        admissible: list[float] = []
        for s in c.scales:
            model.load_state_dict(negated(theta0, tau, s))
            bar.update(1)
            if control_accuracy(model, run, control) < floor:
                break
            admissible.append(s)
            if target is not None and mean_task_loss(model, run, run.data.unlearn, c.batch_size, c.seed) >= target:
                return s
        if not admissible:
            log.warning(
                "task_vector: every scale costs more than %g of the control accuracy; using %g",
                c.tolerance,
                c.scales[0],
            )
            return c.scales[0]
        return admissible[-1]
