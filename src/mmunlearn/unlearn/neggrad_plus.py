"""NegGrad+: gradient ascent on U balanced by descent on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import ConfigError
from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .objectives import GENERATIVE_KINDS, task_loss


@dataclass(frozen=True)
class NegGradPlusConfig(UnlearnConfig):
    """Defaults: Kurmanji et al. (SCRUB paper) weight retain descent by beta and forget ascent by
    1 - beta; beta = 0.95 here (their sweeps span 0.9-0.999), 5 epochs over U."""

    epochs: int = 5
    lr: float = 5e-4
    beta: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta}")


@UNLEARNERS.register("neggrad_plus")
class NegGradPlus(Unlearner[NegGradPlusConfig, None]):
    """Loss = beta * (model objective on R) - (1 - beta) * task loss on U (CE of its forgotten modalities,
    the contrastive loss of the pairs to forget, or a captioner's token cross-entropy of U's captions)."""

    name = "neggrad_plus"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning (NeurIPS 2023), NegGrad+"
    requires = GENERATIVE_KINDS
    Config = NegGradPlusConfig

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        assert step.unlearn is not None and step.retain is not None
        beta = self.config.beta
        forget = task_loss(model, run, step.unlearn)
        return beta * model.loss(step.retain) - (1 - beta) * forget
