"""Boundary Shrink: relabel each sample to forget with the nearest wrong class found by FGSM."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import Classifier
from ..runtime import Batch, eval_mode
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner, present_only


@dataclass(frozen=True)
class BoundaryShrinkConfig(UnlearnConfig):
    """Defaults: Chen et al. (CVPR 2023) code: FGSM bound 0.1 (pixels in [0, 1], quantised to 1/255),
    10 epochs on the forget set with a searched lr; 5 epochs here, lr chosen on the validation split.
    Non-image modalities are attacked with a bound of ``bound`` times their standard deviation."""

    epochs: int = 5
    lr: float = 1e-4
    bound: float = 0.1


def neighbour_labels(original: Classifier, batch: Batch, modalities: list[str], bound: float) -> Tensor:
    """Labels the original assigns to one-step FGSM perturbations of the forgotten inputs. Returns (N,).

    Images (in [0, 1]) move by ``bound`` and are quantised to 1/255; other modalities move by ``bound``
    times their standard deviation.
    """
    adv = {m: batch[m].clone().requires_grad_(True) for m in modalities}
    loss = F.cross_entropy(original({**batch, **adv}), batch["label"])
    grads = torch.autograd.grad(loss, [adv[m] for m in modalities])
    for m, g in zip(modalities, grads, strict=True):
        x = batch[m]
        if m == "image":
            adv[m] = torch.round((x + bound * g.sign()).clamp(0, 1) * 255) / 255
        else:
            adv[m] = x + bound * x.std() * g.sign()
    with eval_mode(original):
        return original({**batch, **{m: adv[m].detach() for m in modalities}}).argmax(1)


@UNLEARNERS.register("boundary_shrink")
class BoundaryShrink(Unlearner[BoundaryShrinkConfig, Tensor]):
    """CE of the forgotten modalities of U towards the label the frozen original gives their FGSM neighbour."""

    name = "boundary_shrink"
    paper = "Chen et al., Boundary Unlearning (CVPR 2023)"
    requires_retain = False
    requires_original = True
    Config = BoundaryShrinkConfig
    phases = ("unlearn",)

    def prepare(self, model: Classifier, run: Run[Tensor]) -> Tensor:
        """The neighbour label of every sample of U (the run's state)."""
        data = run.data
        batch = present_only(data.unlearn.full_batch(), data.modalities)
        return neighbour_labels(run.original, batch, sorted(data.modalities), self.config.bound)

    def loss(self, model: Classifier, run: Run[Tensor], step: Step) -> Tensor:
        assert step.unlearn is not None
        return F.cross_entropy(model(run.forget_view(step.unlearn)), run.state[step.unlearn["index"]])
