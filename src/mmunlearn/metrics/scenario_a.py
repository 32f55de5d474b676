"""Scenario A metric suite: visual unlearning in an audio-visual classifier (DESIGN.md section 4).

Every figure is a `MetricResult`; the forgetting metrics have ``higher_is_better=None`` because their
target is the retrained model's value, not an extreme. `gap_to_retrain` turns a method's records and
retrain's into the headline "Avg. Gap".
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import MultimodalDataset
from ..evaluate import classifier_logits, eval_mode
from ..models import MultimodalClassifier
from ..results import MetricResult
from ..train import epoch_batches
from .functional import accuracy, linear_cka, loss_threshold_auc, svc_mia_efficacy, true_label_confidence

# Headline metrics averaged by the gap to retrain (SalUn's Avg. Gap, extended to the cross-modal ones).
HEADLINE = (
    ("acc_fused", "retain"),
    ("acc_fused", "test"),
    ("acc_image", "unlearn"),
    ("acc_fused", "unlearn"),
    ("acc_audio", "unlearn"),
    ("mia_svc", "unlearn"),
)

# Every metric name `scenario_a_metrics` can produce for an image+audio classifier forgetting images
# (the bench config checks its ``metrics:`` list against these; a test keeps the two in step).
METRIC_NAMES = (
    "acc_fused",
    "acc_image",
    "acc_audio",
    "mia_svc",
    "mia_svc_val",
    "mia_loss_auc",
    "retain_cka_image",
    "relearn_acc_image",
)


@dataclass(frozen=True)
class RelearnConfig:
    """Relearning attack: fine-tune a copy on half of U's images, test on the other half of U's images.

    The attack is deliberately gentle (a few small Adam steps on the forget-modality logits, normalisation
    statistics frozen): a stronger one (20 steps at 1e-3 on 10% of U) wrecked every model, the original
    and the retrained one included, so it measured nothing but the attack.

    Attributes:
        fraction: share of U used to relearn (at least 8 samples).
        steps: optimizer steps.
        lr: AdamW learning rate.
        batch_size: batch size.
        seed: which part of U, and the batch order.
    """

    fraction: float = 0.5
    steps: int = 10
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class ScenarioAData:
    """The data of one request: U, the true retain set R, the test split and the validation split."""

    unlearn: MultimodalDataset
    retain: MultimodalDataset
    test: MultimodalDataset
    validation: MultimodalDataset | None = None
    forget_modality: str = "image"


def _acc(model: MultimodalClassifier, data: MultimodalDataset, modality: str | None) -> float:
    assert data.labels is not None
    return accuracy(classifier_logits(model, data, modality), data.labels)


def _conf(model: MultimodalClassifier, data: MultimodalDataset, modality: str) -> Tensor:
    assert data.labels is not None
    return true_label_confidence(classifier_logits(model, data, modality), data.labels)


def _loss(model: MultimodalClassifier, data: MultimodalDataset, modality: str) -> Tensor:
    assert data.labels is not None
    return F.cross_entropy(classifier_logits(model, data, modality), data.labels, reduction="none")


def utility_and_forgetting(model: MultimodalClassifier, d: ScenarioAData) -> list[MetricResult]:
    """Fused accuracy on R and test; forget-modality and fused accuracy on U; audio-only on U and test."""
    kept = [m for m in model.modalities if m != d.forget_modality]
    out = [
        MetricResult("acc_fused", "retain", _acc(model, d.retain, None)),
        MetricResult("acc_fused", "test", _acc(model, d.test, None)),
        MetricResult(f"acc_{d.forget_modality}", "unlearn", _acc(model, d.unlearn, d.forget_modality), None),
        MetricResult("acc_fused", "unlearn", _acc(model, d.unlearn, None), None),
    ]
    for m in kept:
        out += [
            MetricResult(f"acc_{m}", "unlearn", _acc(model, d.unlearn, m)),
            MetricResult(f"acc_{m}", "test", _acc(model, d.test, m)),
        ]
    return out


def membership(model: MultimodalClassifier, d: ScenarioAData) -> list[MetricResult]:
    """Membership inference on U's forgotten modality.

    * ``mia_svc``: the SalUn protocol (members = the first |test| retain samples, non-members = test);
    * ``mia_svc_val``: the same with the validation split as non-members (same distribution as the
      training data, so a held-out font or voice cannot pass for forgetting);
    * ``mia_loss_auc``: loss-threshold attack, AUC of U against test (0.5 = indistinguishable).
    """
    m = d.forget_modality
    members = d.retain.take(torch.arange(min(len(d.retain), len(d.test))))
    target = _conf(model, d.unlearn, m)
    out = [
        MetricResult(
            "mia_svc", "unlearn", svc_mia_efficacy(_conf(model, members, m), _conf(model, d.test, m), target), None
        )
    ]
    if d.validation is not None:
        val_members = d.retain.take(torch.arange(min(len(d.retain), len(d.validation))))
        score = svc_mia_efficacy(_conf(model, val_members, m), _conf(model, d.validation, m), target)
        out.append(MetricResult("mia_svc_val", "unlearn", score, None))
    out.append(
        MetricResult(
            "mia_loss_auc", "unlearn", loss_threshold_auc(_loss(model, d.unlearn, m), _loss(model, d.test, m)), None
        )
    )
    return out


def structure(
    model: MultimodalClassifier, original: MultimodalClassifier, d: ScenarioAData, limit: int = 2000
) -> MetricResult:
    """Linear CKA between the original's and the model's forget-modality features on retain samples."""
    m = d.forget_modality
    has = d.retain.present[m].nonzero().squeeze(1)[:limit]
    batch = d.retain.batch(has)
    with eval_mode(model), eval_mode(original):
        return MetricResult(f"retain_cka_{m}", "retain", linear_cka(original.embed(batch, m), model.embed(batch, m)))


def relearn(model: MultimodalClassifier, d: ScenarioAData, config: RelearnConfig = RelearnConfig()) -> MetricResult:
    """Forget-modality accuracy on the rest of U after fine-tuning a copy on part of U's forgotten data.

    A method that only hid the knowledge (rather than removing it) recovers quickly; compare with retrain.
    """
    m, n = d.forget_modality, len(d.unlearn)
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    part, rest = d.unlearn.take(perm[:k]), d.unlearn.take(perm[k:])
    attacker = copy.deepcopy(model).eval()  # eval: normalisation statistics stay those of the model
    opt = torch.optim.AdamW(attacker.parameters(), lr=config.lr)
    device = next(attacker.parameters()).device
    for step in range(config.steps):
        idx = epoch_batches(len(part), config.batch_size, config.seed, step)[0]
        batch = {key: v.to(device) for key, v in part.batch(idx).items()}
        loss = F.cross_entropy(attacker.modality_logits(batch, m), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return MetricResult(f"relearn_acc_{m}", "unlearn", _acc(attacker, rest, m), None)


def scenario_a_metrics(
    model: MultimodalClassifier,
    original: MultimodalClassifier,
    data: ScenarioAData,
    relearn_config: RelearnConfig = RelearnConfig(),
) -> list[MetricResult]:
    """Every scenario-A metric of one model (utility, forgetting, retention, privacy, structure, robustness)."""
    return [
        *utility_and_forgetting(model, data),
        *membership(model, data),
        structure(model, original, data),
        relearn(model, data, relearn_config),
    ]


def gap_to_retrain(
    metrics: Sequence[MetricResult], retrain: Sequence[MetricResult], headline: Sequence[tuple[str, str]] = HEADLINE
) -> float:
    """Mean absolute difference from the retrained model over the headline metrics present in both."""
    mine = {(r.name, r.split): r.value for r in metrics}
    ref = {(r.name, r.split): r.value for r in retrain}
    keys = [k for k in headline if k in mine and k in ref]
    if not keys:
        raise ValueError("no headline metric is present in both records")
    return sum(abs(mine[k] - ref[k]) for k in keys) / len(keys)
