"""Gradient ascent (NegGrad): maximise the loss on the data to forget."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..models import MultimodalModel
from .base import UNLEARNERS, Batch, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class GradAscentConfig(UnlearnConfig):
    """Defaults: the Unlearn-Sparse README uses lr 1e-4 for 5 epochs (maintainers advise up to 1e-3
    when forgetting stays weak); AdamW here."""

    epochs: int = 5
    lr: float = 1e-4


@UNLEARNERS.register("grad_ascent")
class GradAscent(Unlearner):
    """Loss = -CE on the forgotten modalities of U (image-only logits for visual unlearning)."""

    name = "grad_ascent"
    paper = "Golatkar et al. 2020 / Thudi et al. 2022 (NegGrad); SalUn GA baseline"
    requires_retain = False
    Config = GradAscentConfig
    phases = ("unlearn",)

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        assert unlearn_batch is not None
        return -F.cross_entropy(model(self.forget_view(unlearn_batch)), unlearn_batch["label"])
