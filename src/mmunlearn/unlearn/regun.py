"""ReGUn: Reference-Guided Unlearning (arXiv 2603.11210), as formulated in docs/methods/regun.md.

The outputs on the data to forget are distilled towards what the frozen original outputs on *held-out*
data (the validation split, which the original never trained on), so that U ends up looking like unseen
data rather than like wrong data; the retain batch keeps the model's own objective:

    L = (1 - retain_weight) * KL(q || softmax(l_theta(x_u) / T)) + retain_weight * L_model(r)

A classifier's reference q of a sample to forget is built once, in `ReGUn.prepare`, from the original's
softened probabilities on the validation split's forget view (``reference``):

* ``"nearest"``: those of the validation sample nearest to it in the original's normalised features of the
  forgotten modalities (the code's ``feature_1nn`` selector);
* ``"class"``: the mean over the validation samples of its own class (class-conditional reference);
* ``"uniform"``: the mean over the whole validation split (the expectation of the code's ``uniform`` draw).

With ``batch_shared`` every sample of a batch gets the mean of the batch's references, as the official
code shares one q per batch (for ``"class"``: the label-histogram-matched mixture, the paper's
"class-histogram matching").

A dual encoder's outputs are the stacked similarity logits of the forget batch (images against captions
and captions against images). Its reference rows are the original's own rows of the batch with each
pair's true-pair logit replaced by a held-out pair's: that of the validation pair nearest to it in the
original's joint (image, caption) embedding (``"nearest"``) or the validation mean (``"uniform"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import MultimodalDataset
from ..errors import ConfigError, DataError
from ..metrics.outputs import pair_embeddings
from ..models.protocols import Classifier, DualEncoderModel
from ..runtime import eval_mode, model_device, to_device
from .base import UNLEARNERS, Run, Step, UnlearnConfig, UnlearnData, Unlearner
from .objectives import MODEL_KINDS, stacked, task_logits

log = logging.getLogger(__name__)

REFERENCES = ("nearest", "class", "uniform")
CHUNK = 256
"""Samples per forward pass when the reference outputs are computed in `ReGUn.prepare`."""


@dataclass(frozen=True)
class ReGUnConfig(UnlearnConfig):
    """Defaults: the official ``conf/unlearn/regun.yaml`` for the loss (T = 1, retain weight 0.5, forget
    weight 1 - 0.5); SGD lr 0.01 x 10 epochs there, here AdamW at the project's unlearning scale (as
    neggrad_plus and scrub); the reference selector is the one that approximates retrain (docs/methods/regun.md).

    Attributes:
        temperature: T, softens both the reference and the model's distribution on U.
        retain_weight: weight of the model's own objective on the retain batch; the forget KL gets 1 minus it.
        reference: how the held-out reference of a sample to forget is chosen: ``"nearest"`` (validation
            sample nearest in the original's features), ``"class"`` (validation samples of its class;
            classifiers only) or ``"uniform"`` (all validation samples).
        batch_shared: give every sample of a forget batch the mean of the batch's references (the
            official code's shared q) instead of its own.
    """

    epochs: int = 5
    lr: float = 5e-4
    temperature: float = 1.0
    retain_weight: float = 0.5
    reference: str = "nearest"
    batch_shared: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.retain_weight <= 1:
            raise ConfigError(f"retain_weight must be in [0, 1], got {self.retain_weight}")
        if self.reference not in REFERENCES:
            raise ConfigError(f"reference must be one of {list(REFERENCES)}, got {self.reference!r}")


@dataclass
class ReGUnState:
    """The references of U, row i for U's sample at position i, built once from the frozen original.

    Attributes:
        targets: (|U|, classes) a classifier's reference probabilities (None for a dual encoder).
        diagonal: (|U|,) a dual encoder's held-out true-pair logits (None for a classifier).
    """

    targets: Tensor | None = field(default=None)
    diagonal: Tensor | None = field(default=None)


# -- references (pure functions, tested against naive loops) ------------------------------------------------


def nearest_rows(queries: Tensor, keys: Tensor) -> Tensor:
    """(Q,) index of each query's nearest key by cosine similarity (the first one on ties)."""
    return (F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T).argmax(1)


def class_means(probs: Tensor, labels: Tensor, classes: int) -> Tensor:
    """(classes, C) mean of ``probs`` over the rows of each class; a class without rows gets the overall mean."""
    out = probs.mean(0, keepdim=True).repeat(classes, 1)
    for c in labels.unique().tolist():
        out[c] = probs[labels == c].mean(0)
    return out


def classifier_references(
    reference: str, val_probs: Tensor, val_labels: Tensor | None, val_feats: Tensor, u_labels: Tensor, u_feats: Tensor
) -> Tensor:
    """(|U|, C) reference distribution of each sample to forget (see the module docstring).

    Args:
        reference: ``"nearest"``, ``"class"`` or ``"uniform"``.
        val_probs: (V, C) the original's softened probabilities on the validation split.
        val_labels: (V,) its labels (needed by ``"class"``).
        val_feats, u_feats: (V, D), (|U|, D) the original's features of the validation split and of U.
        u_labels: (|U|,) U's labels.
    """
    if reference == "nearest":
        return val_probs[nearest_rows(u_feats, val_feats)]
    if reference == "class":
        if val_labels is None:
            raise DataError("regun: reference='class' needs a labelled validation split")
        return class_means(val_probs, val_labels, val_probs.shape[1])[u_labels]
    return val_probs.mean(0, keepdim=True).expand(len(u_labels), -1).clone()


def pair_references(reference: str, val_logits: Tensor, val_joint: Tensor, u_joint: Tensor) -> Tensor:
    """(|U|,) held-out true-pair logit of each pair to forget: its nearest validation pair's or the mean.

    Args:
        reference: ``"nearest"`` or ``"uniform"`` (``"class"`` needs labels, which pairs do not have).
        val_logits: (V,) the original's true-pair logits (scale x cosine) of the validation pairs.
        val_joint, u_joint: (V, 2D), (|U|, 2D) the original's image and caption embeddings, concatenated.
    """
    if reference == "class":
        raise ConfigError("regun: reference='class' needs class labels; a dual encoder's pairs have none")
    if reference == "nearest":
        return val_logits[nearest_rows(u_joint, val_joint)]
    return val_logits.mean().expand(len(u_joint)).clone()


def with_diagonal(similarity: Tensor, diagonal: Tensor) -> Tensor:
    """A (B, B) similarity matrix with its diagonal (the true pairs) replaced by ``diagonal``."""
    eye = torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    return torch.where(eye, diagonal.to(similarity.dtype).unsqueeze(1).expand_as(similarity), similarity)


def reference_kl(targets: Tensor, logits: Tensor, temperature: float) -> Tensor:
    """KL(q || softmax(logits / T)) per row, averaged over the rows (``F.kl_div(..., "batchmean")``)."""
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), targets, reduction="batchmean")


# -- the method ------------------------------------------------------------------------------------------------


@UNLEARNERS.register("regun")
class ReGUn(Unlearner[ReGUnConfig, ReGUnState]):
    """Distil U's outputs towards the original's outputs on held-out (validation) data; keep R's objective."""

    name = "regun"
    paper = "ReGUn: Reference-Guided Unlearning (ICLR 2026, arXiv 2603.11210)"
    stage = "training-time"
    requires = MODEL_KINDS
    requires_original = True
    Config = ReGUnConfig

    def validate(self, model: Any, data: UnlearnData) -> type:
        """The base checks, and a non-empty validation split to take the held-out references from."""
        kind = super().validate(model, data)
        if data.validation is None or len(data.validation) == 0:
            raise DataError(
                "regun needs held-out reference data: pass a validation split (data the original never trained on)"
            )
        return kind

    def prepare(self, model: Any, run: Run[ReGUnState]) -> ReGUnState:
        """The references of every sample of U, from the frozen original on the validation split."""
        validation = run.data.validation
        assert validation is not None  # checked by validate
        if run.kind is DualEncoderModel:
            return ReGUnState(diagonal=self._pair_diagonal(run.original, run.data.unlearn, validation))
        return ReGUnState(targets=self._classifier_targets(run.original, run, validation))

    def _classifier_targets(self, original: Classifier, run: Run[ReGUnState], validation: MultimodalDataset) -> Tensor:
        c, u = self.config, run.data.unlearn
        val_logits, val_feats = self._outputs(original, run, validation)
        _, u_feats = self._outputs(original, run, u)
        if u.labels is None:
            raise DataError("regun: the unlearn set has no labels")
        probs = F.softmax(val_logits / c.temperature, dim=1)
        return classifier_references(c.reference, probs, validation.labels, val_feats, u.labels, u_feats)

    def _outputs(self, original: Classifier, run: Run[ReGUnState], data: MultimodalDataset) -> tuple[Tensor, Tensor]:
        """The original's forget-view logits and its concatenated features of the forgotten modalities, on the CPU."""
        logits, feats = [], []
        device = model_device(original)
        with eval_mode(original):
            for start in range(0, len(data), CHUNK):
                batch = run.forget_view(
                    to_device(data.batch(torch.arange(start, min(start + CHUNK, len(data)))), device)
                )
                f = original.features(batch)
                logits.append(original.logits_from_features(f).cpu())
                feats.append(torch.cat([f[m] for m in sorted(run.data.modalities)], 1).cpu())
        return torch.cat(logits), torch.cat(feats)

    def _pair_diagonal(self, original: DualEncoderModel, u: MultimodalDataset, validation: MultimodalDataset) -> Tensor:
        with eval_mode(original):
            scale = float(original.logit_scale())
        val_v, val_t = pair_embeddings(original, validation)
        u_v, u_t = pair_embeddings(original, u)
        val_logits = scale * (val_v * val_t).sum(1)
        return pair_references(
            self.config.reference, val_logits, torch.cat([val_v, val_t], 1), torch.cat([u_v, u_t], 1)
        )

    def loss(self, model: Any, run: Run[ReGUnState], step: Step) -> Tensor:
        c, u, r = self.config, step.unlearn, step.retain
        assert u is not None and r is not None
        logits, _ = task_logits(model, run, u)
        forget = reference_kl(self.batch_targets(run, u), logits, c.temperature)
        return (1 - c.retain_weight) * forget + c.retain_weight * model.loss(r)

    def batch_targets(self, run: Run[ReGUnState], u: dict[str, Tensor]) -> Tensor:
        """The reference distributions of the rows of `task_logits` on the forget batch ``u``."""
        index, temperature = u["index"], self.config.temperature
        if run.kind is DualEncoderModel:
            assert run.state.diagonal is not None
            diagonal = run.state.diagonal.to(u["image"].device)[index.to(u["image"].device)]
            if self.config.batch_shared:
                diagonal = diagonal.mean().expand_as(diagonal)
            orig = run.original
            with torch.no_grad():
                similarity = orig.logit_scale() * orig.encode_image(u["image"]) @ orig.encode_text(u["text"]).T
            return F.softmax(stacked(with_diagonal(similarity, diagonal)) / temperature, dim=1)
        assert run.state.targets is not None
        targets = run.state.targets.to(index.device)[index]
        return targets.mean(0, keepdim=True).expand_as(targets) if self.config.batch_shared else targets
