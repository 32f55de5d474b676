"""Random labels (RL): train the data to forget towards random targets, then repair on the retain set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .objectives import MODEL_KINDS, random_targets, task_logits


@dataclass(frozen=True)
class RandomLabelConfig(UnlearnConfig):
    """Defaults: SalUn README runs RL 10 epochs at lr 0.013 (SGD) on 10% CIFAR-10, each epoch a pass
    over the forget set with labels drawn uniformly (they may equal the truth), then a pass over the
    retain set; here the same two passes, 1 epoch (same share of the original's budget as finetune).
    A dual encoder's pairs to forget get their captions re-paired at random within each batch."""

    epochs: int = 1
    lr: float = 2e-4


def random_label_loss(model: Any, run: Run[Any], step: Step) -> Tensor:
    """CE of U towards random targets (random classes, or randomly re-paired captions), or the
    model's objective on a retain batch."""
    if step.unlearn is not None:
        logits, targets = task_logits(model, run, step.unlearn)
        return F.cross_entropy(logits, random_targets(run, logits, targets))
    assert step.retain is not None
    return model.loss(step.retain)


@UNLEARNERS.register("random_label")
class RandomLabel(Unlearner[RandomLabelConfig, None]):
    """Pass over U with random targets on its forgotten modalities, then a pass over R."""

    name = "random_label"
    paper = "Golatkar et al. 2020; Fan et al., SalUn (ICLR 2024) RL baseline"
    requires = MODEL_KINDS
    Config = RandomLabelConfig
    phases = ("unlearn", "retain")

    def loss(self, model: Any, run: Run[None], step: Step) -> Tensor:
        return random_label_loss(model, run, step)
