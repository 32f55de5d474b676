"""l1-sparse unlearning: fine-tune on the retain set with a decaying l1 penalty on the weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.protocols import Classifier
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .objectives import MODEL_KINDS


@dataclass(frozen=True)
class L1SparseConfig(UnlearnConfig):
    """Defaults: Jia et al. (Model Sparsity Can Simplify Machine Unlearning) fine-tune on the retain set
    with alpha_t * ||theta||_1 over all parameters, alpha_t decaying linearly to 0; alpha is user-given
    (the paper's CIFAR-10 runs use 5e-4 with SGD); 1 epoch here, as finetune."""

    epochs: int = 1
    lr: float = 2e-4
    alpha: float = 5e-5


@UNLEARNERS.register("l1_sparse")
class L1Sparse(Unlearner[L1SparseConfig, None]):
    """Loss = model objective on R + alpha_t * sum |theta|, alpha_t = alpha * (1 - t / T) over steps t."""

    name = "l1_sparse"
    paper = "Jia et al., Model Sparsity Can Simplify Machine Unlearning (NeurIPS 2023)"
    requires = MODEL_KINDS
    Config = L1SparseConfig
    phases = ("retain",)

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        assert step.retain is not None
        alpha = self.config.alpha * (1 - step.index / step.total)
        l1 = torch.stack([p.abs().sum() for p in model.parameters()]).sum()
        return model.loss(step.retain) + alpha * l1
