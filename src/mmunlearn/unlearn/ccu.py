"""CCU: Cross-modal Contrastive Unlearning (arXiv 2509.23895), as formulated in docs/methods/ccu.md.

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

A dual encoder forgets whole pairs with the same parts carried over (terms in `ccu_pairs`; docs/methods/
ccu.md, "Dual encoders"): (a) each forget image is contrasted against its own caption (the negative) and
towards the retained captions it resembles most, each forget caption likewise; (b) the retain batch's
retrieval distributions follow the original's; (c) the retained pairs' contrastive loss counts the forget
embeddings as negatives; and the calibration matches U's true-pair cosines quantile by quantile against
the validation split's, (a) weighting each pair by its excess over its match (0 once reached). It runs
``pairs_epochs`` at ``pairs_lr`` times U's initial mean excess.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..models.protocols import Classifier, DualEncoderModel
from ..runtime import Batch, eval_mode
from ..train import WorkFolder
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner, present_only
from .ccu_pairs import (
    complete_pairs,
    info_nce,
    pair_calibration_weights,
    pair_excess,
    pair_inverse_contrastive,
    retrieval_kl,
    true_pair_cosines,
)
from .objectives import MODEL_KINDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CCUConfig(UnlearnConfig):
    """Defaults chosen on the validation split, never on test: ``benchmarks/tune_ccu.py`` for a classifier,
    ``benchmarks/tune_ccu_pairs.py`` for a dual encoder's ``pairs_lr`` (see docs/methods/ccu.md).

    Attributes:
        lambda_a: weight of the inverse contrastive forgetting term (a).
        lambda_b: weight of the cross-modal retention term (b).
        lambda_c: weight of the dual-set separation term (c).
        temperature: contrastive temperature tau.
        use_a, use_b, use_c: ablation switches of the three terms.
        calibrate: gate (a) by quantile matching against the validation split's image-only losses (a dual
            encoder: true-pair cosines).
        pairs_lr: a dual encoder's learning rate per unit of excess: the run uses ``pairs_lr`` times U's
            mean excess cosine over its calibration targets at the start (``FALLBACK_EXCESS`` without
            calibration) in place of ``lr``, which stays the classifier's.
        pairs_epochs: a dual encoder's epochs over U in place of ``epochs`` (None: ``epochs``); the soft gate
            of (a) stops each pair at its target, so more epochs reach the held-out level without overshooting.
        nearest_positives: dual encoder only: weight (a)'s positives by the anchor's own retrieval
            distribution over the retained keys (False: uniform weights).
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
    pairs_lr: float = 1.5e-3
    pairs_epochs: int | None = 4
    nearest_positives: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if min(self.lambda_a, self.lambda_b, self.lambda_c) < 0:
            raise ConfigError("the lambda weights must be >= 0")
        if self.pairs_lr <= 0:
            raise ConfigError(f"pairs_lr must be > 0, got {self.pairs_lr}")
        if self.pairs_epochs is not None and self.pairs_epochs < 1:
            raise ConfigError(f"pairs_epochs must be >= 1, got {self.pairs_epochs}")


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


def calibration_targets(unlearn_losses: Tensor, validation_losses: Tensor) -> Tensor:
    """Quantile matching: each sample of U gets the validation loss at its own rank's quantile.

    The sample whose loss ranks r-th of |U| (as a fraction q = r / (|U| - 1)) is paired with the
    validation loss at the same quantile q (nearest rank). Returns (|U|,) target losses.
    """
    v = torch.sort(validation_losses).values
    rank = torch.argsort(torch.argsort(unlearn_losses)).float() / max(1, len(unlearn_losses) - 1)
    return v[(rank * (len(v) - 1)).round().long()]


def calibration_gate(losses_now: Tensor, targets: Tensor) -> Tensor:
    """1 for samples whose loss is still below their matched validation loss (still remembered), else 0."""
    return (losses_now < targets).float()


FALLBACK_EXCESS = 0.1
"""A dual encoder's mean excess cosine assumed when there is nothing to calibrate against."""
MIN_EXCESS = 1e-3
"""The smallest mean excess a dual encoder's learning rate is scaled by (nothing left to forget)."""


@dataclass
class CCUState:
    """The run's state: the modalities kept, the calibration targets of U (refreshed every epoch) and, for
    a dual encoder, U's mean excess cosine over its targets at the start (None without calibration)."""

    kept: tuple[str, ...]
    targets: Tensor | None = field(default=None)
    excess: float | None = None


@UNLEARNERS.register("ccu")
class CCU(Unlearner[CCUConfig, CCUState]):
    """Cross-modal contrastive unlearning of the visual features of U (classifier), or of U's pairs (dual encoder)."""

    name = "ccu"
    paper = "Cross-modal Contrastive Unlearning (arXiv 2509.23895); project formulation in docs/methods/ccu.md"
    requires = MODEL_KINDS
    requires_original = True
    Config = CCUConfig

    def prepare(self, model: Any, run: Run[CCUState]) -> CCUState:
        if self.config.calibrate and run.data.validation is None:
            log.warning("ccu: no validation split given; forgetting is not calibrated to unseen data")
        if run.kind is not DualEncoderModel:
            return CCUState(tuple(m for m in model.modalities if m not in run.data.modalities))
        state = CCUState(())
        if run.data.validation is not None and self.config.calibrate:
            cosines = true_pair_cosines(model, run.data.unlearn)
            state.targets = calibration_targets(cosines, true_pair_cosines(model, run.data.validation))
            state.excess = max(float(pair_excess(cosines, state.targets).mean()), MIN_EXCESS)
        return state

    def run(self, model: Any, run: Run[CCUState], work: WorkFolder | None = None) -> None:
        """The shared loop; a dual encoder's runs ``pairs_epochs`` at ``pairs_lr`` times U's initial mean excess."""
        if run.kind is not DualEncoderModel:
            return super().run(model, run, work)
        config = self.config
        excess = FALLBACK_EXCESS if run.state.excess is None else run.state.excess
        epochs = config.epochs if config.pairs_epochs is None else config.pairs_epochs
        self.config = dataclasses.replace(config, lr=config.pairs_lr * excess, epochs=epochs)
        try:
            super().run(model, run, work)
        finally:
            self.config = config

    def on_epoch_start(self, model: Any, run: Run[CCUState], epoch: int) -> None:
        """Re-match U's losses (a dual encoder: true-pair cosines) against the validation split's with the
        model as it is now."""
        val = run.data.validation
        if val is None or not self.config.calibrate:
            return
        if run.kind is DualEncoderModel:
            if epoch > 0:  # epoch 0's targets are prepare's: the model has not moved since
                u, v = true_pair_cosines(model, run.data.unlearn), true_pair_cosines(model, val)
                run.state.targets = calibration_targets(u, v)
            return
        u_loss = self._forget_losses(model, run, run.data.unlearn.full_batch())
        run.state.targets = calibration_targets(u_loss, self._forget_losses(model, run, val.full_batch()))

    def _forget_losses(self, model: Classifier, run: Run[CCUState], batch: Batch) -> Tensor:
        """Per-sample CE of the forgotten modalities alone (image-only for visual unlearning). Returns (N,)."""
        with eval_mode(model):
            return F.cross_entropy(model(run.forget_view(batch)), batch["label"], reduction="none")

    def loss(self, model: Any, run: Run[CCUState], step: Step) -> Tensor:
        c, u, r = self.config, step.unlearn, step.retain
        assert u is not None and r is not None
        if run.kind is DualEncoderModel:
            return self._pairs_loss(model, run, u, complete_pairs(r))
        # Each encoder runs once per batch; every term below reuses these features.
        fu = {m: model.embed(u, m) for m in model.modalities}
        fr = {m: model.embed(r, m) for m in model.modalities}
        total = model.loss_from_features(r, fr)
        yu = u["label"]
        for m in sorted(run.data.modalities):
            zu = F.normalize(fu[m], dim=1)
            has = r[f"present_{m}"]
            zr, yr = F.normalize(fr[m], dim=1)[has], r["label"][has]
            if c.use_a and c.lambda_a > 0:
                per = inverse_contrastive(zu, yu, zr.detach(), yr, c.temperature)
                total = total + c.lambda_a * (per * self._gate(model, run, u, fu)).mean()
            if c.use_c and c.lambda_c > 0 and len(zr) > 1:
                total = total + c.lambda_c * separation(zr, yr, zu.detach(), c.temperature)
        if c.use_b and c.lambda_b > 0:
            total = total + c.lambda_b * self._retention(model, run, u, r, fu, fr)
        return total

    def _pairs_loss(self, model: DualEncoderModel, run: Run[CCUState], u: Batch, r: Batch) -> Tensor:
        """The dual-encoder objective: InfoNCE on the retained pairs + (a) gated + (b) + (c) (docs/methods/ccu.md)."""
        c = self.config
        vu, tu = model.encode_image(u["image"]), model.encode_text(u["text"])
        vr, tr = model.encode_image(r["image"]), model.encode_text(r["text"])
        scale = model.logit_scale()
        total = info_nce(vr, tr, scale)
        if c.use_a and c.lambda_a > 0:
            weights = scale.detach() if c.nearest_positives else None
            per = pair_inverse_contrastive(vu, tu, tr.detach(), vr.detach(), c.temperature, weights)
            gate = torch.ones_like(per)
            if run.state.targets is not None and run.state.excess is not None:
                cos = (vu * tu).sum(1).detach()
                targets = run.state.targets.to(cos.device)[u["index"]]
                gate = pair_calibration_weights(cos, targets, run.state.excess)
            total = total + c.lambda_a * (per * gate).mean()
        if c.use_b and c.lambda_b > 0:
            orig = run.original
            with torch.no_grad():
                target = orig.logit_scale() * orig.encode_image(r["image"]) @ orig.encode_text(r["text"]).T
            total = total + c.lambda_b * retrieval_kl(target, scale * vr @ tr.T)
        if c.use_c and c.lambda_c > 0:
            total = total + c.lambda_c * info_nce(vr, tr, scale, tu.detach(), vu.detach())
        return total

    def _gate(self, model: Classifier, run: Run[CCUState], u: Batch, fu: dict[str, Tensor]) -> Tensor:
        """`calibration_gate` of U's batch with the current weights (all ones without calibration)."""
        y, targets = u["label"], run.state.targets
        if targets is None:
            return torch.ones(len(y), device=y.device)
        with torch.no_grad():
            logits = model.logits_from_features({m: fu[m] for m in run.data.modalities})
            now = F.cross_entropy(logits, y, reduction="none")
        return calibration_gate(now, targets.to(now.device)[u["index"]])

    def _retention(
        self, model: Classifier, run: Run[CCUState], u: Batch, r: Batch, fu: dict[str, Tensor], fr: dict[str, Tensor]
    ) -> Tensor:
        """Term (b): each kept branch keeps the original's predictions on U and R, and U's fused prediction
        follows the original's prediction from the kept modalities, so U is still recognised by its sound.
        For full deletion (nothing kept) every branch keeps its predictions on R only."""
        orig, logits, kept = run.original, model.logits_from_features, run.state.kept
        total = u["label"].new_zeros((), dtype=torch.float)
        for m in kept or model.modalities:
            with torch.no_grad():
                t_r = orig.modality_logits(r, m)
            total = total + kl_to(t_r, logits({m: fr[m]}))
        if kept:
            with torch.no_grad():
                t_u = orig(present_only(u, kept))
            present = {m: fu[m] * u[f"present_{m}"].to(fu[m].dtype).unsqueeze(1) for m in model.modalities}
            total = total + kl_to(t_u, logits({m: present[m] for m in kept})) + kl_to(t_u, logits(present))
        return total
