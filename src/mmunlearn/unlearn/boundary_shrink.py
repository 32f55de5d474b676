"""Boundary Shrink: relabel each sample to forget with the nearest wrong class found by FGSM."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..evaluate import eval_mode
from ..models import MultimodalModel
from .base import UNLEARNERS, Batch, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class BoundaryShrinkConfig(UnlearnConfig):
    """Defaults: Chen et al. (CVPR 2023) code: FGSM bound 0.1 (pixels in [0, 1], quantised to 1/255),
    10 epochs on the forget set with a searched lr; 5 epochs here, lr chosen on the validation split.
    Non-image modalities are attacked with a bound of ``bound`` times their standard deviation."""

    epochs: int = 5
    lr: float = 1e-4
    bound: float = 0.1


@UNLEARNERS.register("boundary_shrink")
class BoundaryShrink(Unlearner):
    """CE of the forgotten modalities of U towards the label the frozen original gives their FGSM neighbour."""

    name = "boundary_shrink"
    paper = "Chen et al., Boundary Unlearning (CVPR 2023)"
    requires_retain = False
    requires_original = True
    Config = BoundaryShrinkConfig
    phases = ("unlearn",)

    def prepare(self, model: MultimodalModel) -> None:
        ctx = self.ctx
        assert ctx is not None and ctx.original is not None
        batch = self.forget_view(ctx.unlearn.full_batch())
        self._targets = self.neighbour_labels(ctx.original, batch)

    def neighbour_labels(self, original: MultimodalModel, batch: Batch) -> Tensor:
        """Labels the original assigns to one-step FGSM perturbations of the forgotten inputs. Returns (N,)."""
        mods = sorted(self.ctx.modalities) if self.ctx else ["image"]
        adv = {m: batch[m].clone().requires_grad_(True) for m in mods}
        loss = F.cross_entropy(original({**batch, **adv}), batch["label"])
        grads = torch.autograd.grad(loss, [adv[m] for m in mods])
        bound = self.config.bound  # type: ignore[attr-defined]
        for m, g in zip(mods, grads, strict=True):
            x = batch[m]
            if m == "image":
                adv[m] = torch.round((x + bound * g.sign()).clamp(0, 1) * 255) / 255
            else:
                adv[m] = x + bound * x.std() * g.sign()
        with eval_mode(original):
            return original({**batch, **{m: adv[m].detach() for m in mods}}).argmax(1)

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        assert unlearn_batch is not None
        return F.cross_entropy(model(self.forget_view(unlearn_batch)), self._targets[unlearn_batch["index"]])
