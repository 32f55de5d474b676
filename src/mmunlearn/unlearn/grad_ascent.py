"""Gradient ascent (NegGrad): maximise the loss on the data to forget."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class GradAscentConfig(UnlearnConfig):
    """Defaults: the Unlearn-Sparse README uses lr 1e-4 for 5 epochs (maintainers advise up to 1e-3
    when forgetting stays weak); AdamW here."""

    epochs: int = 5
    lr: float = 1e-4


@UNLEARNERS.register("grad_ascent")
class GradAscent(Unlearner[GradAscentConfig, None]):
    """Loss = -CE on the forgotten modalities of U (image-only logits for visual unlearning)."""

    name = "grad_ascent"
    paper = "Golatkar et al. 2020 / Thudi et al. 2022 (NegGrad); SalUn GA baseline"
    requires_retain = False
    Config = GradAscentConfig
    phases = ("unlearn",)

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        assert step.unlearn is not None
        return -F.cross_entropy(model(run.forget_view(step.unlearn)), step.unlearn["label"])
