"""Concept guard: detect the concept in the image, then suppress it in that image's caption only
(docs/methods/concept_guard.md).

A linear detector on the captioner's ``image_features`` (a logistic regression, or the nearest-centroid
rule, fitted on U's images naming the concept against images to keep) scores every image,
``s(x) = w . f(x) + b``; an image is flagged when ``s(x) > tau``. The threshold comes from the validation
split when it has images naming the concept, else from a held-out part of U and of the keep set. At
generation the flagged rows get the concept ban of token_suppression (``transformers``'
`NoBadWordsLogitsProcessor`) or, with a finite ``penalty``, a bias of ``-penalty`` on the same sequences
(`SequenceBiasLogitsProcessor`); unflagged rows keep their scores exactly, so their captions are the
original's, bit for bit. The captioner's weights do not change; the result is a `DecodingEdit`.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.concepts import naming
from ..data.core import MultimodalDataset
from ..errors import ConfigError, DataError
from ..models.protocols import CaptionerModel
from ..runtime import eval_mode, model_device, seeded
from .base import UNLEARNERS, UnlearnData, Unlearner
from .decoding import BanConfig, DecodingEdit, DecodingRule, ban_processor, forget_phrases, keep_set, rows_of, wrap

DETECTORS = ("logistic", "centroid")
THRESHOLD_RULES = ("fpr", "recall", "youden")


@dataclass(frozen=True)
class ConceptGuardConfig(BanConfig):
    """Defaults: the concept-gated guard for captioning is our design (SAFREE, ICLR 2025, guards
    text-to-image prompts; its captioning variant is not published): the gate threshold is the 95th
    percentile of the detector's score on images without the concept (``threshold_rule="fpr"``,
    ``target=0.95``, as that sketch proposes), the flagged images get the hard ban of token_suppression.
    Trains no network: the optimiser fields are accepted and unused (``seed`` draws the held-out part).

    Attributes:
        detector: ``"logistic"`` (scikit-learn `LogisticRegression`, C = 1, balanced classes, on
            standardised features) or ``"centroid"`` (nearest class mean on standardised features).
        threshold_rule: ``"fpr"``: tau = the ``target`` quantile of the negatives' scores;
            ``"recall"``: the largest tau that flags at least ``target`` of the positives;
            ``"youden"``: the tau maximising recall - false-positive rate (``target`` unused).
        target: see ``threshold_rule``.
        holdout: share of positives and negatives held out to choose tau when the validation split has
            no image naming the concept (the detector is fitted on the rest).
        max_negatives: at most this many images to keep (a seeded sample) are used as negatives.
        penalty: None: ban (-inf); a number: subtract it from the banned sequences' last token (a steer).
    """

    detector: str = "logistic"
    threshold_rule: str = "fpr"
    target: float = 0.95
    holdout: float = 0.25
    max_negatives: int = 4096
    penalty: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.detector not in DETECTORS:
            raise ConfigError(f"detector must be one of {list(DETECTORS)}, got {self.detector!r}")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"threshold_rule must be one of {list(THRESHOLD_RULES)}, got {self.threshold_rule!r}")
        if not 0 < self.target < 1 or not 0 < self.holdout < 1:
            raise ConfigError(f"target and holdout must be in (0, 1), got {self.target}, {self.holdout}")
        if self.max_negatives < 1:
            raise ConfigError(f"max_negatives must be >= 1, got {self.max_negatives}")
        if self.penalty is not None and not (math.isfinite(self.penalty) and self.penalty > 0):
            raise ConfigError(f"penalty must be a finite number > 0 or None (ban), got {self.penalty}")


# -- the detector --------------------------------------------------------------------------------------
class LinearDetector(torch.nn.Module):
    """``s(f) = f . weight + bias``; flags ``s > threshold`` (all three are buffers: explicit, saved state)."""

    def __init__(self, weight: Tensor, bias: float, threshold: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", torch.tensor(float(bias)))
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def score(self, features: Tensor) -> Tensor:
        """(B,) detector scores of (B, D) image features."""
        return features.float() @ self.weight + self.bias  # type: ignore[operator]

    def flags(self, features: Tensor) -> Tensor:
        """(B,) bool: the images the guard acts on."""
        return self.score(features) > self.threshold  # type: ignore[operator]


def image_features(model: Any, images: Tensor, batch: int = 256) -> Tensor:
    """(N, D) the captioner's ``image_features`` of ``images``, in eval mode, without gradient."""
    device = model_device(model)
    with torch.no_grad(), eval_mode(model):
        return torch.cat([model.image_features(p.to(device)).float().cpu() for p in images.split(batch)])


def fit_linear(pos: Tensor, neg: Tensor, kind: str, seed: int) -> tuple[Tensor, float]:
    """(weight, bias) of a detector on raw features, fitted on standardised ones (folded back in).

    ``"centroid"``: ``s = ||z - m_neg||^2 - ||z - m_pos||^2 = 2 z . (m_pos - m_neg) + ||m_neg||^2 - ||m_pos||^2``.
    """
    x = torch.cat([pos, neg]).double()
    mu, sd = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    zp, zn = (pos.double() - mu) / sd, (neg.double() - mu) / sd
    if kind == "centroid":
        mp, mn = zp.mean(0), zn.mean(0)
        w, b = 2 * (mp - mn), float(mn @ mn - mp @ mp)
    else:
        from sklearn.linear_model import LogisticRegression

        y = [1] * len(zp) + [0] * len(zn)
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed)
        clf.fit(torch.cat([zp, zn]).numpy(), y)
        w, b = torch.from_numpy(clf.coef_[0]).double(), float(clf.intercept_[0])
    return (w / sd).float(), b - float(((mu / sd) * w).sum())


def below(x: Tensor) -> Tensor:
    """The largest float32 strictly below each value (so ``s > below(v)`` holds for ``s = v``)."""
    return torch.nextafter(x.float(), torch.tensor(-math.inf))


def choose_threshold(pos: Tensor, neg: Tensor, rule: str, target: float) -> float:
    """Tau from held-out positive and negative scores (see `ConceptGuardConfig.threshold_rule`)."""
    if rule == "fpr":
        return float(torch.quantile(neg.double(), target))
    if rule == "recall":
        ranked = pos.sort().values
        return float(below(ranked[math.floor((1 - target) * len(ranked) + 1e-9)]))
    candidates = below(torch.cat([pos, neg]).sort().values)
    gains = [(float((pos > t).double().mean() - (neg > t).double().mean()), -i) for i, t in enumerate(candidates)]
    return float(candidates[-max(gains)[1]])


def split_holdout(n: int, share: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(fit, held-out) positions of ``n`` items; with fewer than 2 items both are everything."""
    perm = torch.randperm(n, generator=generator)
    k = min(n - 1, max(1, round(share * n))) if n >= 2 else 0
    return (perm[k:], perm[:k]) if k else (perm, perm)


def concept_rows(dataset: MultimodalDataset, concept: str | None) -> Tensor:
    """(N,) bool: the images of ``dataset`` whose caption names ``concept`` (all of them without one)."""
    if concept is None or dataset.captions is None:
        return torch.ones(len(dataset), dtype=torch.bool)
    out = torch.zeros(len(dataset), dtype=torch.bool)
    with contextlib.suppress(DataError):  # no caption names it
        out[naming(dataset, concept)] = True
    return out


def fit_detector(model: Any, data: UnlearnData, c: ConceptGuardConfig) -> LinearDetector:
    """Fit the detector on U's concept images vs images to keep, and choose its threshold.

    Raises:
        DataError: no image of U names the concept, or no image to keep.
    """
    g = torch.Generator().manual_seed(c.seed)
    u = data.unlearn.inputs["image"][concept_rows(data.unlearn, data.concept)]
    keep = keep_set(data)
    if len(u) == 0 or len(keep) == 0:
        raise DataError("concept_guard needs images of U naming the concept and images to keep (the negatives)")
    negatives = keep.inputs["image"][torch.randperm(len(keep), generator=g)[: c.max_negatives].sort().values]
    pos, neg = image_features(model, u), image_features(model, negatives)
    val = data.validation
    named = concept_rows(val, data.concept) if val is not None and data.concept and val.captions else None
    if val is not None and named is not None and bool(named.any()) and not bool(named.all()):
        w, b = fit_linear(pos, neg, c.detector, c.seed)
        held = image_features(model, val.inputs["image"])
        held_pos, held_neg = held[named], held[~named]
    else:
        (pf, ph), (nf, nh) = split_holdout(len(pos), c.holdout, g), split_holdout(len(neg), c.holdout, g)
        w, b = fit_linear(pos[pf], neg[nf], c.detector, c.seed)
        held_pos, held_neg = pos[ph], neg[nh]
    tau = choose_threshold(held_pos @ w + b, held_neg @ w + b, c.threshold_rule, c.target)
    return LinearDetector(w, b, tau).to(model_device(model))


# -- decoding ------------------------------------------------------------------------------------------
class GatedProcessor:
    """Apply ``inner`` to the rows of flagged images; every other row keeps its scores exactly."""

    def __init__(self, inner: Any, flags: Tensor) -> None:
        self.inner, self.flags = inner, flags

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        on = rows_of(self.flags, len(input_ids)).to(scores.device).unsqueeze(1)
        if not bool(on.any()):
            return scores
        return torch.where(on, self.inner(input_ids, scores.clone()), scores)


class GuardRule(DecodingRule):
    """The decoding-time part of concept_guard: the detector and the ban applied to flagged images.

    Attributes:
        detector: the `LinearDetector` on the captioner's ``image_features``.
        sequences: the banned token-id sequences.
        eos_id: the captioner's EOS.
        penalty: None (ban) or the bias subtracted from the banned sequences' last token.
    """

    def __init__(
        self, detector: LinearDetector, sequences: list[list[int]], eos_id: int | None, penalty: float | None
    ) -> None:
        super().__init__()
        self.detector = detector
        self.sequences = [list(s) for s in sequences]
        self.eos_id, self.penalty = eos_id, penalty

    def flags(self, captioner: Any, images: Tensor) -> Tensor:
        """(B,) bool: which images the guard acts on."""
        with torch.no_grad():
            return self.detector.flags(captioner.image_features(images))

    def processor(self, captioner: Any, images: Tensor) -> GatedProcessor:
        """The ban, gated by the detector's flags of ``images``."""
        return GatedProcessor(ban_processor(self.sequences, self.eos_id, self.penalty), self.flags(captioner, images))


@UNLEARNERS.register("concept_guard")
class ConceptGuard(Unlearner[ConceptGuardConfig, None]):
    """Flag concept images with a detector on image features; ban the concept in their captions only."""

    name = "concept_guard"
    paper = (
        "Concept-gated decoding guard for captioning (ours), after Yoon et al., SAFREE: Training-Free and "
        "Adaptive Guard for Safe Text-to-Image and Video Generation (ICLR 2025)"
    )
    stage = "decoding-time"
    requires = (CaptionerModel,)
    requires_retain = True
    Config = ConceptGuardConfig

    def unlearn(
        self, model: Any, data: UnlearnData, original: Any = None, work_dir: str | os.PathLike[str] | None = None
    ) -> DecodingEdit:
        """A `DecodingEdit` of ``model`` that bans the request's words on flagged images (no loop:
        ``work_dir`` is unused).

        Raises:
            ConfigError: the model is not a captioner.
            DataError: empty U, no image to keep, or no word of the concept in the vocabulary.
        """
        self.validate(model, data)
        c = self.config
        sequences = forget_phrases(model, data, c.extra_phrases, c.scope, c.rates)
        with seeded(c.seed):
            detector = fit_detector(model, data, c)
        eos = getattr(model, "eos_id", None)
        rule = GuardRule(detector, sequences, None if eos is None else int(eos), c.penalty)
        return wrap(model, rule, self.name)
