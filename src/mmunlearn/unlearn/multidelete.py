"""MultiDelete: decouple the modalities of the data to forget, keep multimodal and unimodal knowledge."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import Classifier
from ..runtime import Batch
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class MultiDeleteConfig(UnlearnConfig):
    """Defaults: Cheng & Amiri (ECCV 2024) weight the three losses equally in their main runs
    (alpha = beta = gamma = 1); 5 epochs over U here, as the other paired methods."""

    epochs: int = 5
    lr: float = 5e-4
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0


def joint_features(model: Classifier, batch: Batch) -> Tensor:
    """Concatenated per-modality features (missing ones zero): the classifier's multimodal representation."""
    feats = model.features(batch)
    return torch.cat([feats[m] for m in model.modalities], dim=1)


def unpaired(unlearn_batch: Batch, retain_batch: Batch, modalities: frozenset[str]) -> Batch:
    """U's batch with each forgotten modality replaced by that of a random retain sample that has it.

    (The gold-standard set of a visual-only request holds U's own samples with their images missing;
    those are never drawn, so the target is never a sample with nothing in place of the forgotten input.)
    """
    out = dict(unlearn_batch)
    n = len(unlearn_batch["label"])
    for m in sorted(modalities):
        pool = retain_batch[f"present_{m}"].nonzero().squeeze(1)
        if len(pool) == 0:
            pool = torch.arange(len(retain_batch["label"]), device=pool.device)
        pick = pool[torch.randint(0, len(pool), (n,), device=pool.device)]
        out[m] = retain_batch[m][pick]
        out[f"present_{m}"] = retain_batch[f"present_{m}"][pick]
    return out


@UNLEARNERS.register("multidelete")
class MultiDelete(Unlearner[MultiDeleteConfig, None]):
    """alpha * modality decoupling on U + beta * multimodal + gamma * unimodal knowledge retention on R.

    Decoupling: the representation of each sample to forget is pulled to the original model's
    representation of the same sample with its forgotten modalities swapped for those of unrelated
    retain samples, i.e. the forgotten inputs are made to look like data that does not belong to it.
    """

    name = "multidelete"
    paper = "Cheng & Amiri, MultiDelete: Multimodal Machine Unlearning (ECCV 2024)"
    requires_original = True
    Config = MultiDeleteConfig

    def loss(self, model: Classifier, run: Run[None], step: Step) -> Tensor:
        c, orig = self.config, run.original
        u, r = step.unlearn, step.retain
        assert u is not None and r is not None
        with torch.no_grad():
            target = joint_features(orig, unpaired(u, r, run.data.modalities))
            keep_joint = joint_features(orig, r)
            keep_uni = {m: orig.embed(r, m) for m in model.modalities}
        decouple = F.mse_loss(joint_features(model, u), target)
        multimodal = F.mse_loss(joint_features(model, r), keep_joint)
        unimodal = torch.stack([F.mse_loss(model.embed(r, m), keep_uni[m]) for m in model.modalities]).sum()
        return c.alpha * decouple + c.beta * multimodal + c.gamma * unimodal
