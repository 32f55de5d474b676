"""CCU: Cross-modal Contrastive Unlearning (arXiv 2509.23895), as formulated in DESIGN.md section 4.

Three parts on top of the model's own objective on retained data:

* (a) selective visual unlearning by inverse contrastive learning: each unlearn image is pulled towards
  retain images of *other* classes and contrasted against retain images of its own class;
* (b) cross-modal knowledge retention: the audio branch keeps the original's audio-only predictions
  (on U and R), and U's fused prediction follows the original's audio-only prediction of that sample,
  so a forgotten sample is still recognised by its sound;
* (c) dual-set contrastive separation: supervised contrastive loss on retain visual features in which
  unlearn features appear only as negatives, so (a) does not disturb the retain class structure.

Forgetting stops at the level of unseen data, not at zero: at every epoch the image-only losses of U
are matched quantile by quantile against those of the validation split (never trained on by the
original), and (a) acts only on samples whose loss is still below their matched validation quantile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..evaluate import eval_mode
from ..models import MultimodalModel
from .base import UNLEARNERS, Batch, UnlearnConfig, Unlearner, present_only

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CCUConfig(UnlearnConfig):
    """Defaults chosen on the validation split, never on test: ``benchmarks/tune_ccu.py`` (see docs/methods/ccu.md).

    Attributes:
        lambda_a: weight of the inverse contrastive forgetting term (a).
        lambda_b: weight of the cross-modal retention term (b).
        lambda_c: weight of the dual-set separation term (c).
        temperature: contrastive temperature tau.
        use_a, use_b, use_c: ablation switches of the three terms.
        calibrate: gate (a) by quantile matching against the validation split's image-only losses.
    """

    epochs: int = 2
    lr: float = 3e-4
    lambda_a: float = 1.0
    lambda_b: float = 1.0
    lambda_c: float = 0.5
    temperature: float = 0.1
    use_a: bool = True
    use_b: bool = True
    use_c: bool = True
    calibrate: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if min(self.lambda_a, self.lambda_b, self.lambda_c) < 0:
            raise ConfigError("the lambda weights must be >= 0")


def inverse_contrastive(anchors: Tensor, anchor_y: Tensor, keys: Tensor, key_y: Tensor, tau: float) -> Tensor:
    """Term (a): supervised contrastive loss with positives and negatives swapped.

    For anchor u, every key of another class is a positive and the keys of u's own class are the
    negatives: ``-mean_p log(exp(s_up) / (exp(s_up) + sum_n exp(s_un)))``.

    Args:
        anchors: (A, D) normalised features of the samples to forget.
        anchor_y: (A,) their labels.
        keys: (K, D) normalised retain features.
        key_y: (K,) their labels.
        tau: temperature.

    Returns:
        (A,) per-anchor losses (0 for an anchor without positive or negative keys).
    """
    sim = anchors @ keys.T / tau
    own = anchor_y[:, None] == key_y[None, :]
    neg = torch.logsumexp(sim.masked_fill(~own, float("-inf")), dim=1, keepdim=True)
    log_prob = sim - torch.logaddexp(sim, neg)
    pos = (~own).float()
    per = -(log_prob * pos).sum(1) / pos.sum(1).clamp_min(1)
    valid = own.any(1) & (~own).any(1)
    return per * valid


def separation(feats: Tensor, y: Tensor, negatives: Tensor, tau: float) -> Tensor:
    """Term (c): supervised contrastive loss on retain features; ``negatives`` only enlarge denominators.

    Args:
        feats: (R, D) normalised retain features.
        y: (R,) labels.
        negatives: (U, D) normalised features of the samples to forget (used as negatives only).
        tau: temperature.

    Returns:
        Scalar mean over retain anchors that have at least one positive.
    """
    n = len(feats)
    sim = feats @ torch.cat([feats, negatives]).T / tau
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[:, :n] = torch.eye(n, dtype=torch.bool, device=feats.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    pos = torch.zeros_like(self_mask)
    pos[:, :n] = (y[:, None] == y[None, :]) & ~self_mask[:, :n]
    count = pos.sum(1)
    per = -(log_prob * pos).sum(1) / count.clamp_min(1)
    return per[count > 0].mean() if (count > 0).any() else feats.sum() * 0


def kl_to(target_logits: Tensor, logits: Tensor) -> Tensor:
    """KL(softmax(target) || softmax(logits)), batch mean."""
    return F.kl_div(F.log_softmax(logits, 1), F.softmax(target_logits, 1), reduction="batchmean")


@UNLEARNERS.register("ccu")
class CCU(Unlearner):
    """Cross-modal contrastive unlearning of the visual features of U."""

    name = "ccu"
    paper = "Cross-modal Contrastive Unlearning (arXiv 2509.23895); project formulation in DESIGN.md section 4"
    requires_original = True
    Config = CCUConfig

    def prepare(self, model: MultimodalModel) -> None:
        ctx = self.ctx
        assert ctx is not None
        self._targets: Tensor | None = None
        self._kept = tuple(m for m in model.modalities if m not in ctx.modalities)
        if self.config.calibrate and ctx.validation is None:  # type: ignore[attr-defined]
            log.warning("ccu: no validation split given; forgetting is not calibrated to unseen data")

    def on_epoch_start(self, model: MultimodalModel, epoch: int) -> None:
        """Re-match U's losses against the validation split with the model as it is now."""
        ctx = self.ctx
        assert ctx is not None
        if ctx.validation is None or not self.config.calibrate:  # type: ignore[attr-defined]
            return
        u_loss = self._forget_losses(model, ctx.unlearn.full_batch())
        v_loss = torch.sort(self._forget_losses(model, ctx.validation.full_batch())).values
        rank = torch.argsort(torch.argsort(u_loss)).float() / max(1, len(u_loss) - 1)
        self._targets = v_loss[(rank * (len(v_loss) - 1)).round().long()]

    def _forget_losses(self, model: MultimodalModel, batch: Batch) -> Tensor:
        """Per-sample CE of the forgotten modalities alone (image-only for visual unlearning). Returns (N,)."""
        with eval_mode(model):
            return F.cross_entropy(model(self.forget_view(batch)), batch["label"], reduction="none")

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        ctx, c = self.ctx, self.config
        assert ctx is not None and unlearn_batch is not None and retain_batch is not None
        # Each encoder runs once per batch; every term below reuses these features.
        fu = {m: model.embed(unlearn_batch, m) for m in model.modalities}  # type: ignore[operator]
        fr = {m: model.embed(retain_batch, m) for m in model.modalities}  # type: ignore[operator]
        total = model.loss_from_features(retain_batch, fr)  # type: ignore[operator]
        tau = c.temperature  # type: ignore[attr-defined]
        yu = unlearn_batch["label"]
        for m in sorted(ctx.modalities):
            zu = F.normalize(fu[m], dim=1)
            has = retain_batch[f"present_{m}"]
            zr, yr = F.normalize(fr[m], dim=1)[has], retain_batch["label"][has]
            if c.use_a and c.lambda_a > 0:  # type: ignore[attr-defined]
                per = inverse_contrastive(zu, yu, zr.detach(), yr, tau)
                total = total + c.lambda_a * (per * self._gate(model, unlearn_batch, fu)).mean()  # type: ignore[attr-defined]
            if c.use_c and c.lambda_c > 0 and len(zr) > 1:  # type: ignore[attr-defined]
                total = total + c.lambda_c * separation(zr, yr, zu.detach(), tau)  # type: ignore[attr-defined]
        if c.use_b and c.lambda_b > 0:  # type: ignore[attr-defined]
            total = total + c.lambda_b * self._retention(model, unlearn_batch, retain_batch, fu, fr)  # type: ignore[attr-defined]
        return total

    def _gate(self, model: MultimodalModel, unlearn_batch: Batch, fu: dict[str, Tensor]) -> Tensor:
        """1 for samples whose forget-view loss is still below their matched validation loss, else 0."""
        y = unlearn_batch["label"]
        if self._targets is None:
            return torch.ones(len(y), device=y.device)
        ctx = self.ctx
        assert ctx is not None
        with torch.no_grad():
            logits = model.logits_from_features({m: fu[m] for m in ctx.modalities})  # type: ignore[operator]
            now = F.cross_entropy(logits, y, reduction="none")
        return (now < self._targets.to(now.device)[unlearn_batch["index"]]).float()

    def _retention(
        self,
        model: MultimodalModel,
        unlearn_batch: Batch,
        retain_batch: Batch,
        fu: dict[str, Tensor],
        fr: dict[str, Tensor],
    ) -> Tensor:
        """Term (b): each kept branch keeps the original's predictions on U and R, and U's fused prediction
        follows the original's prediction from the kept modalities, so U is still recognised by its sound.
        For full deletion (nothing kept) every branch keeps its predictions on R only."""
        ctx = self.ctx
        assert ctx is not None and ctx.original is not None
        orig, logits = ctx.original, model.logits_from_features  # type: ignore[operator]
        total = unlearn_batch["label"].new_zeros((), dtype=torch.float)
        for m in self._kept or model.modalities:
            with torch.no_grad():
                t_r = orig.modality_logits(retain_batch, m)  # type: ignore[operator]
            total = total + kl_to(t_r, logits({m: fr[m]}))
        if self._kept:
            with torch.no_grad():
                t_u = orig(present_only(unlearn_batch, self._kept))
            present = {m: fu[m] * unlearn_batch[f"present_{m}"].to(fu[m].dtype).unsqueeze(1) for m in model.modalities}
            total = total + kl_to(t_u, logits({m: present[m] for m in self._kept})) + kl_to(t_u, logits(present))
        return total
