"""CoUn: Contrastive Unlearning (arXiv 2509.16391), as formulated in docs/methods/coun.md.

A model retrained without U classifies U's samples by their similarity to the retained clusters. CoUn
imitates that by training on the retain data only (U itself is never read), with the model's own
objective plus SimCLR-style contrastive learning between two augmented views of each retained sample:

    L = L_model(t(r)) + cl_weight * L_CL,   L_CL = mean_i l_i(Z -> Z') + mean_i l_i(Z' -> Z),
    l_i(Z -> Z') = -log( exp(cos(z_i, z'_i) / tau) / sum_j exp(cos(z_i, z'_j) / tau) ),

with Z, Z' the penultimate features of the views t(r), t'(r) (no projection head, labels unused in L_CL).
The false negatives of L_CL make clusters collide, which moves the representations of the forgotten
samples, no longer anchored by their own training signal, towards the retained samples they resemble.

A classifier's features are those of each forgotten modality (`Classifier.embed`) on the retain rows where
that modality is present, the objective the model's own on view 1 (`Classifier.loss_from_features`). A dual
encoder's objective is its own contrastive loss on view 1 of the retained pairs, and L_CL contrasts the
image embeddings of the two views (captions are token ids, which these augmentations do not cover).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..models.protocols import Classifier, DualEncoderModel
from ..runtime import Batch
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS


@dataclass(frozen=True)
class CoUnConfig(UnlearnConfig):
    """Defaults: the paper's loss (CE + lambda L_CL, cross-view negatives only, no projection head) with
    lambda = 0.5 and tau = 0.3 from its tuning ranges ([0.1, 6] and (0, 0.3]; the project's features are
    small, see docs/methods/coun.md); its 50 epochs of SGD against a
    retrain of about 180 epochs scaled to the project's 15-epoch recipe (4 epochs), AdamW at a quarter of
    the recipe's peak lr; its pad-4 random crop of 32-pixel images as a shift of 1/8 of each side, without
    the horizontal flip (the project's digits, shapes and spatial relations are not mirror-invariant).

    Attributes:
        cl_weight: lambda, the weight of the contrastive term.
        temperature: tau of the contrastive term.
        shift: largest random translation of an augmented view, as a fraction of each shifted axis (the two
            last axes of images and video frames, the time axis of spectrograms); 0 gives identical views.
        flip: also flip images and video frames horizontally with probability 1/2.
    """

    epochs: int = 4
    lr: float = 5e-4
    cl_weight: float = 0.5
    temperature: float = 0.3
    shift: float = 0.125
    flip: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.cl_weight < 0:
            raise ConfigError(f"cl_weight must be >= 0, got {self.cl_weight}")
        if not 0 <= self.shift < 1:
            raise ConfigError(f"shift must be in [0, 1), got {self.shift}")


def cross_view_nce(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """L_CL: InfoNCE from view 1 to view 2 plus from view 2 to view 1, cross-view negatives only.

    Args:
        z1, z2: (B, D) features of the two views (row i of each is the same sample); normalised here.
        tau: temperature.

    Returns:
        Scalar ``mean_i l_i(Z -> Z') + mean_i l_i(Z' -> Z)``.
    """
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / tau
    target = torch.arange(len(sim), device=sim.device)
    return F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)


def translate(x: Tensor, offsets: Tensor, dims: int) -> Tensor:
    """Each sample shifted by its own integer offsets along its last ``dims`` axes, zero-filled (pad-and-crop).

    Args:
        x: (B, ...) inputs.
        offsets: (B, dims) integer shifts; a positive shift moves the content towards higher indices.
        dims: how many trailing axes to shift (1 or 2).
    """
    out = torch.zeros_like(x)
    for i in range(len(x)):
        src, dst = [slice(None)] * x.dim(), [slice(None)] * x.dim()
        src[0] = dst[0] = slice(i, i + 1)
        for k in range(dims):
            axis, s, n = x.dim() - dims + k, int(offsets[i, k]), x.shape[x.dim() - dims + k]
            src[axis] = slice(max(0, -s), min(n, n - s))
            dst[axis] = slice(max(0, s), min(n, n + s))
        out[tuple(dst)] = x[tuple(src)]
    return out


def augment(x: Tensor, shift: float, flip: bool) -> Tensor:
    """One random view of a batch of inputs, from the global (seeded) RNG.

    Images and video frames (3 or more axes per sample) are translated along their two last axes by up to
    ``shift`` of each and, with ``flip``, mirrored along the last one with probability 1/2; spectrograms
    (2 axes) are translated along time (the last axis); token ids and vectors are returned unchanged.
    """
    per_sample = x.dim() - 1
    if not x.is_floating_point() or per_sample < 2:
        return x
    dims = 2 if per_sample >= 3 else 1
    limits = [int(shift * n) for n in x.shape[-dims:]]
    offsets = torch.stack([torch.randint(-m, m + 1, (len(x),)) for m in limits], 1)
    out = translate(x, offsets, dims) if any(limits) else x
    if flip and dims == 2:
        mirror = (torch.rand(len(x)) < 0.5).to(x.device)
        out = torch.where(mirror.view(-1, *[1] * per_sample), out.flip(-1), out)
    return out


@UNLEARNERS.register("coun")
class CoUn(Unlearner[CoUnConfig, None]):
    """Supervised + contrastive learning on two augmented views of the retain data only."""

    name = "coun"
    paper = "CoUn: Contrastive Unlearning (NeurIPS 2025, arXiv 2509.16391)"
    stage = "training-time"
    requires = MODEL_KINDS
    Config = CoUnConfig
    phases = ("retain",)

    def views(self, batch: Batch, keys: tuple[str, ...]) -> tuple[Batch, Batch]:
        """Two augmented copies of ``batch``: each input in ``keys`` drawn independently per view."""
        c = self.config
        first = {**batch, **{k: augment(batch[k], c.shift, c.flip) for k in keys}}
        second = {**batch, **{k: augment(batch[k], c.shift, c.flip) for k in keys}}
        return first, second

    def loss(self, model: Any, run: Run[None], step: Step) -> Tensor:
        assert step.retain is not None
        if run.kind is DualEncoderModel:
            return self._pairs_loss(model, complete_pairs(step.retain))
        return self._classifier_loss(model, run, step.retain)

    def _classifier_loss(self, model: Classifier, run: Run[None], r: Batch) -> Tensor:
        """The model's objective on view 1 + cl_weight x mean over the forgotten modalities of L_CL."""
        c = self.config
        forgotten = tuple(m for m in model.modalities if m in run.data.modalities)
        first, second = self.views(r, tuple(model.modalities))
        f1 = {m: model.embed(first, m) for m in model.modalities}
        total = model.loss_from_features(first, f1)
        terms = []
        for m in forgotten:
            has = (
                r[f"present_{m}"]
                if f"present_{m}" in r
                else torch.ones(len(f1[m]), dtype=torch.bool, device=f1[m].device)
            )
            if int(has.sum()) > 1:
                terms.append(cross_view_nce(f1[m][has], model.embed(second, m)[has], c.temperature))
        if terms and c.cl_weight > 0:
            total = total + c.cl_weight * torch.stack(terms).mean()
        return total

    def _pairs_loss(self, model: DualEncoderModel, r: Batch) -> Tensor:
        """The model's contrastive loss on view 1 of the pairs + cl_weight x L_CL of the two views' images."""
        c = self.config
        first, second = self.views(r, ("image",))
        total = model.loss(first)
        if c.cl_weight > 0 and len(r["image"]) > 1:
            z1, z2 = model.encode_image(first["image"]), model.encode_image(second["image"])
            total = total + c.cl_weight * cross_view_nce(z1, z2, c.temperature)
        return total
