"""MultiDelete: decouple the modalities of the data to forget, keep multimodal and unimodal knowledge."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import MultimodalModel
from .base import UNLEARNERS, Batch, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class MultiDeleteConfig(UnlearnConfig):
    """Defaults: Cheng & Amiri (ECCV 2024) weight the three losses equally in their main runs
    (alpha = beta = gamma = 1); 5 epochs over U here, as the other paired methods."""

    epochs: int = 5
    lr: float = 5e-4
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0


def joint_features(model: MultimodalModel, batch: Batch) -> Tensor:
    """Concatenated per-modality features (missing ones zero): the classifier's multimodal representation."""
    feats = model.features(batch)  # type: ignore[operator]
    return torch.cat([feats[m] for m in model.modalities], dim=1)


@UNLEARNERS.register("multidelete")
class MultiDelete(Unlearner):
    """alpha * modality decoupling on U + beta * multimodal + gamma * unimodal knowledge retention on R.

    Decoupling: the representation of each sample to forget is pulled to the original model's
    representation of the same sample with its forgotten modalities swapped for those of unrelated
    retain samples, i.e. the forgotten inputs are made to look like data that does not belong to it.
    """

    name = "multidelete"
    paper = "Cheng & Amiri, MultiDelete: Multimodal Machine Unlearning (ECCV 2024)"
    requires_original = True
    Config = MultiDeleteConfig

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        ctx, c = self.ctx, self.config
        assert ctx is not None and ctx.original is not None and unlearn_batch is not None and retain_batch is not None
        with torch.no_grad():
            target = joint_features(ctx.original, self._unpaired(unlearn_batch, retain_batch))
            keep_joint = joint_features(ctx.original, retain_batch)
            keep_uni = {m: ctx.original.embed(retain_batch, m) for m in model.modalities}  # type: ignore[operator]
        decouple = F.mse_loss(joint_features(model, unlearn_batch), target)
        multimodal = F.mse_loss(joint_features(model, retain_batch), keep_joint)
        unimodal = sum(F.mse_loss(model.embed(retain_batch, m), keep_uni[m]) for m in model.modalities)  # type: ignore[operator]
        return c.alpha * decouple + c.beta * multimodal + c.gamma * unimodal  # type: ignore[attr-defined, no-any-return]

    def _unpaired(self, unlearn_batch: Batch, retain_batch: Batch) -> Batch:
        """U's batch with each forgotten modality replaced by that of a random retain sample that has it.

        (The retain set of a visual-only request holds U's own samples with their images missing; those
        are never drawn, so the target is never a sample with nothing in place of the forgotten input.)
        """
        assert self.ctx is not None
        out = dict(unlearn_batch)
        n = len(unlearn_batch["label"])
        for m in sorted(self.ctx.modalities):
            pool = retain_batch[f"present_{m}"].nonzero().squeeze(1)
            if len(pool) == 0:
                pool = torch.arange(len(retain_batch["label"]), device=pool.device)
            pick = pool[torch.randint(0, len(pool), (n,), device=pool.device)]
            out[m] = retain_batch[m][pick]
            out[f"present_{m}"] = retain_batch[f"present_{m}"][pick]
        return out
