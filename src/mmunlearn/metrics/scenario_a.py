"""Scenario A metric suite: visual unlearning in an audio-visual classifier.

The forgotten modality the metrics look at is the request's visual modality, image or video
(`forget_modality_of`); the other modalities of the model are the kept ones. Every figure is a `MetricResult`; the forgetting metrics have ``higher_is_better=None`` because their
target is the retrained model's value, not an extreme. `gap_to_retrain` turns a method's records and
retrain's into the headline "Avg. Gap".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import MultimodalDataset
from ..models.protocols import Classifier
from ..optim import make_optimizer, optimizer_step
from ..records.scenarios import HEADLINE, SCENARIO_A_METRICS, gap_to_retrain
from ..results import MetricResult
from ..runtime import epoch_batches, eval_mode, model_device, to_device
from .functional import accuracy, linear_cka, loss_threshold_auc, svc_mia_efficacy, true_label_confidence
from .outputs import LogitCache

REQUIRES = (Classifier,)
"""The model protocol the scenario-A suite needs."""
METRIC_NAMES = SCENARIO_A_METRICS
VISUAL_MODALITIES = ("image", "video")
"""The visual modalities, in the order `forget_modality_of` prefers them."""
__all__ = [
    "DEFAULT_RELEARN",
    "HEADLINE",
    "METRIC_NAMES",
    "VISUAL_MODALITIES",
    "RelearnConfig",
    "ScenarioAData",
    "forget_modality_of",
    "gap_to_retrain",
    "scenario_a_metrics",
]


def forget_modality_of(modalities: Iterable[str]) -> str:
    """The modality whose forgetting the metrics measure: the request's visual modality (image, else video),
    else the first forgotten modality in sorted order (e.g. audio for an audio-only request).

    Raises:
        ValueError: no modality is given.
    """
    mods = set(modalities)
    if not mods:
        raise ValueError("a request forgets at least one modality")
    return next((m for m in VISUAL_MODALITIES if m in mods), None) or sorted(mods)[0]


@dataclass(frozen=True)
class RelearnConfig:
    """Relearning attack: fine-tune a copy on half of U's forgotten-modality inputs (images or videos), test
    on the other half.

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


DEFAULT_RELEARN = RelearnConfig()


@dataclass(frozen=True)
class ScenarioAData:
    """The data of one request: U, the true retain set R, the test split, the validation split and the
    forgotten modality the metrics measure (see `forget_modality_of`: ``"image"`` or ``"video"`` for
    visual unlearning)."""

    unlearn: MultimodalDataset
    retain: MultimodalDataset
    test: MultimodalDataset
    validation: MultimodalDataset | None = None
    forget_modality: str = "image"


def _acc(logits: LogitCache, data: MultimodalDataset, modality: str | None) -> float:
    assert data.labels is not None
    return accuracy(logits(data, modality), data.labels)


def _conf(logits: LogitCache, data: MultimodalDataset, modality: str) -> Tensor:
    assert data.labels is not None
    return true_label_confidence(logits(data, modality), data.labels)


def _loss(logits: LogitCache, data: MultimodalDataset, modality: str) -> Tensor:
    assert data.labels is not None
    return F.cross_entropy(logits(data, modality), data.labels, reduction="none")


def utility_and_forgetting(model: Classifier | LogitCache, d: ScenarioAData) -> list[MetricResult]:
    """Fused accuracy on R and test; forget-modality and fused accuracy on U; audio-only on U and test."""
    model = model if isinstance(model, LogitCache) else LogitCache(model)
    kept = [m for m in model.model.modalities if m != d.forget_modality]
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


def membership(model: Classifier | LogitCache, d: ScenarioAData) -> list[MetricResult]:
    """Membership inference on U's forgotten modality.

    * ``mia_svc``: the SalUn protocol (members = the first |test| retain samples, non-members = test);
    * ``mia_svc_val``: the same with the validation split as non-members (same distribution as the
      training data, so a held-out font or voice cannot pass for forgetting);
    * ``mia_loss_auc``: loss-threshold attack, AUC of U against test (0.5 = indistinguishable).
    """
    model = model if isinstance(model, LogitCache) else LogitCache(model)
    m = d.forget_modality
    retain_conf = _conf(model, d.retain, m)  # members: the first |non-members| retain samples
    target = _conf(model, d.unlearn, m)
    test_conf = _conf(model, d.test, m)
    out = [MetricResult("mia_svc", "unlearn", svc_mia_efficacy(retain_conf[: len(test_conf)], test_conf, target), None)]
    if d.validation is not None:
        val_conf = _conf(model, d.validation, m)
        score = svc_mia_efficacy(retain_conf[: len(val_conf)], val_conf, target)
        out.append(MetricResult("mia_svc_val", "unlearn", score, None))
    out.append(
        MetricResult(
            "mia_loss_auc", "unlearn", loss_threshold_auc(_loss(model, d.unlearn, m), _loss(model, d.test, m)), None
        )
    )
    return out


def structure(model: Classifier, original: Classifier, d: ScenarioAData, limit: int = 2000) -> MetricResult:
    """Linear CKA between the original's and the model's forget-modality features on retain samples."""
    m = d.forget_modality
    has = d.retain.present[m].nonzero().squeeze(1)[:limit]
    batch = d.retain.batch(has)
    with eval_mode(model), eval_mode(original):
        return MetricResult(f"retain_cka_{m}", "retain", linear_cka(original.embed(batch, m), model.embed(batch, m)))


def relearn(model: Classifier, d: ScenarioAData, config: RelearnConfig | None = None) -> MetricResult:
    """Forget-modality accuracy on the rest of U after fine-tuning a copy on part of U's forgotten data.

    A method that only hid the knowledge (rather than removing it) recovers quickly; compare with retrain.
    """
    config = config or DEFAULT_RELEARN
    m, n = d.forget_modality, len(d.unlearn)
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    part, rest = d.unlearn.take(perm[:k]), d.unlearn.take(perm[k:])
    attacker = copy.deepcopy(model).eval()  # eval: normalisation statistics stay those of the model
    opt = make_optimizer(attacker, "adamw", config.lr)
    device = model_device(attacker)
    for step in range(config.steps):
        idx = epoch_batches(len(part), config.batch_size, config.seed, step)[0]
        batch = to_device(part.batch(idx), device)
        loss = F.cross_entropy(attacker.modality_logits(batch, m), batch["label"])
        optimizer_step(attacker, opt, loss, None)
    return MetricResult(f"relearn_acc_{m}", "unlearn", _acc(LogitCache(attacker), rest, m), None)


def scenario_a_metrics(
    model: Classifier,
    original: Classifier,
    data: ScenarioAData,
    relearn_config: RelearnConfig | None = None,
) -> list[MetricResult]:
    """Every scenario-A metric of one model (utility, forgetting, retention, privacy, structure, robustness).

    Each (dataset, modality) logits are computed once and shared by the metrics that need them.
    """
    logits = LogitCache(model)
    return [
        *utility_and_forgetting(logits, data),
        *membership(logits, data),
        structure(model, original, data),
        relearn(model, data, relearn_config),
    ]
