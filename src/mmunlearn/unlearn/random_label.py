"""Random labels (RL): train the data to forget towards random classes, then repair on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class RandomLabelConfig(UnlearnConfig):
    """Defaults: SalUn README runs RL 10 epochs at lr 0.013 (SGD) on 10% CIFAR-10, each epoch a pass
    over the forget set with labels drawn uniformly (they may equal the truth), then a pass over the
    retain set; here the same two passes, 1 epoch (same share of the original's budget as finetune)."""

    epochs: int = 1
    lr: float = 2e-4


def random_labels(labels: Tensor, num_classes: int) -> Tensor:
    """Uniform random classes, one per row (drawn from the loop's seeded generator)."""
    return torch.randint(0, num_classes, labels.shape, device=labels.device)


def random_label_loss(model: Classifier, run: Run[object], step: Step) -> Tensor:
    """CE of U's forgotten modalities towards random labels, or the model's objective on a retain batch."""
    if step.unlearn is not None:
        logits = model(run.forget_view(step.unlearn))
        return F.cross_entropy(logits, random_labels(step.unlearn["label"], logits.shape[1]))
    assert step.retain is not None
    return model.loss(step.retain)


@UNLEARNERS.register("random_label")
class RandomLabel(Unlearner[RandomLabelConfig, None]):
    """Pass over U with random labels on its forgotten modalities, then a pass over R."""

    name = "random_label"
    paper = "Golatkar et al. 2020; Fan et al., SalUn (ICLR 2024) RL baseline"
    Config = RandomLabelConfig
    phases = ("unlearn", "retain")

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        return random_label_loss(model, run, step)  # type: ignore[arg-type]
