"""Fine-tuning on the retain set (FT): forgetting by catastrophic forgetting."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .objectives import GENERATIVE_KINDS


@dataclass(frozen=True)
class FinetuneConfig(UnlearnConfig):
    """Defaults: the SalUn/Unlearn-Sparse code fine-tunes 10 epochs at lr 0.01 (SGD) against a
    182-epoch original, about 5% of its budget; here 1 epoch against the 15-epoch recipe, with the
    recipe's optimizer (AdamW) at a tenth of its peak lr."""

    epochs: int = 1
    lr: float = 2e-4


@UNLEARNERS.register("finetune")
class Finetune(Unlearner[FinetuneConfig, None]):
    """Train on the gold-standard set only, with the model's own training objective."""

    name = "finetune"
    paper = "Warnecke et al., Machine Unlearning of Features and Labels (NDSS 2023); SalUn/Sparse FT baseline"
    requires = GENERATIVE_KINDS
    Config = FinetuneConfig
    phases = ("retain",)

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        assert step.retain is not None
        return model.loss(step.retain)
