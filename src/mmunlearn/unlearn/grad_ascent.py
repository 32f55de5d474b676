"""Gradient ascent (NegGrad): maximise the loss on the data to forget."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .objectives import GENERATIVE_KINDS, task_loss


@dataclass(frozen=True)
class GradAscentConfig(UnlearnConfig):
    """Defaults: the Unlearn-Sparse README uses lr 1e-4 for 5 epochs (maintainers advise up to 1e-3
    when forgetting stays weak); AdamW here."""

    epochs: int = 5
    lr: float = 1e-4


@UNLEARNERS.register("grad_ascent")
class GradAscent(Unlearner[GradAscentConfig, None]):
    """Loss = -task loss on U: CE of its forgotten modalities (image-only logits for visual unlearning),
    or, for a dual encoder, the contrastive loss of the pairs to forget, or, for a captioner, the
    teacher-forced token cross-entropy of U's captions."""

    name = "grad_ascent"
    paper = "Golatkar et al. 2020 / Thudi et al. 2022 (NegGrad); SalUn GA baseline"
    requires = GENERATIVE_KINDS
    requires_retain = False
    Config = GradAscentConfig
    phases = ("unlearn",)

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        assert step.unlearn is not None
        return -task_loss(model, run, step.unlearn)
