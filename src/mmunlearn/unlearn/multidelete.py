"""MultiDelete: decouple the modalities of the data to forget, keep multimodal and unimodal knowledge.

Classifier: the joint (concatenated) features of U are pulled to the original's features of U with its
forgotten modalities swapped for unrelated retain data. Dual encoder (docs/methods/multidelete.md, "Dual
encoders"): the similarity matrix of U's batch is pulled to the original's similarities of randomly
re-paired images and captions, and the retain batch's similarities and embeddings are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import Classifier, DualEncoderModel
from ..runtime import Batch
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS


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


def decoupling_loss(similarity: Tensor, original: Tensor, pi: Tensor) -> Tensor:
    """L_MD of a dual encoder: each similarity of U's batch regressed onto the original's similarity of a
    random pair, in both retrieval directions.

    ``1/2 [mean_ij (S[i, j] - S0[i, pi(j)])^2 + mean_ij (S[j, i] - S0[pi(j), i])^2]``: image i against
    caption j is pulled to the original's image i against caption pi(j), and caption i against image j
    to the original's caption i against image pi(j).

    Args:
        similarity: (B, B) cosines of the model, images (rows) against captions (columns).
        original: (B, B) cosines of the original on the same batch.
        pi: (B,) a permutation of the batch.
    """
    i2t = (similarity - original[:, pi]).pow(2).mean()
    t2i = (similarity.T - original.T[:, pi]).pow(2).mean()
    return (i2t + t2i) / 2


def unimodal_retention(v: Tensor, t: Tensor, v0: Tensor, t0: Tensor) -> Tensor:
    """L_UKR of a dual encoder: ``mean_i ||v_i - v0_i||^2 + ||t_i - t0_i||^2`` (squared norms summed over D)."""
    return ((v - v0).pow(2).sum(1) + (t - t0).pow(2).sum(1)).mean()


@UNLEARNERS.register("multidelete")
class MultiDelete(Unlearner[MultiDeleteConfig, None]):
    """alpha * modality decoupling on U + beta * multimodal + gamma * unimodal knowledge retention on R.

    Decoupling: the representation of each sample to forget is pulled to the original model's
    representation of the same sample with its forgotten modalities swapped for those of unrelated
    retain samples, i.e. the forgotten inputs are made to look like data that does not belong to it.
    """

    name = "multidelete"
    paper = "Cheng & Amiri, MultiDelete: Multimodal Machine Unlearning (ECCV 2024)"
    requires = MODEL_KINDS
    requires_original = True
    Config = MultiDeleteConfig

    def loss(self, model: Any, run: Run[None], step: Step) -> Tensor:
        c, orig = self.config, run.original
        u, r = step.unlearn, step.retain
        assert u is not None and r is not None
        if run.kind is DualEncoderModel:
            return self._pairs_loss(model, orig, u, complete_pairs(r))
        with torch.no_grad():
            target = joint_features(orig, unpaired(u, r, run.data.modalities))
            keep_joint = joint_features(orig, r)
            keep_uni = {m: orig.embed(r, m) for m in model.modalities}
        decouple = F.mse_loss(joint_features(model, u), target)
        multimodal = F.mse_loss(joint_features(model, r), keep_joint)
        unimodal = torch.stack([F.mse_loss(model.embed(r, m), keep_uni[m]) for m in model.modalities]).sum()
        return c.alpha * decouple + c.beta * multimodal + c.gamma * unimodal

    def _pairs_loss(self, model: DualEncoderModel, orig: DualEncoderModel, u: Batch, r: Batch) -> Tensor:
        """alpha * L_MD on U's batch + beta * L_MKR + gamma * L_UKR on the retain batch (no logit scale)."""
        c = self.config
        pi = torch.randperm(len(u["image"]), device=u["image"].device)
        with torch.no_grad():
            s0_u = orig.encode_image(u["image"]) @ orig.encode_text(u["text"]).T
            v0, t0 = orig.encode_image(r["image"]), orig.encode_text(r["text"])
        v, t = model.encode_image(r["image"]), model.encode_text(r["text"])
        decouple = decoupling_loss(model.encode_image(u["image"]) @ model.encode_text(u["text"]).T, s0_u, pi)
        multimodal = (v @ t.T - v0 @ t0.T).pow(2).mean()
        return c.alpha * decouple + c.beta * multimodal + c.gamma * unimodal_retention(v, t, v0, t0)
