"""What a gradient method optimises, for each kind of model it can edit.

A method is written once against these functions; the model kind of the run (`Run.kind`, the protocol
the model satisfied) decides what they mean:

* a `Classifier`: the logits of U's forgotten modalities over the classes, the targets are the labels;
* a `DualEncoderModel`: the similarity logits of the batch's images against its captions and of its
  captions against its images, stacked, the targets are the true pairs. Their cross-entropy is CLIP's
  symmetric InfoNCE loss, so "the task loss on the data to forget" is the contrastive loss of the pairs;
* a `CaptionerModel` (methods whose ``requires`` is `GENERATIVE_KINDS`): the teacher-forced next-token
  logits of the batch's captions, flattened over the positions that are not padding, the targets are the
  caption's tokens (EOS included); their cross-entropy is the captioner's own token loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.protocols import CaptionerModel, Classifier, DualEncoderModel
from ..runtime import Batch
from .base import Run, present_only

MODEL_KINDS = (Classifier, DualEncoderModel)
"""What the methods that work on both kinds declare as ``requires``."""
GENERATIVE_KINDS = (*MODEL_KINDS, CaptionerModel)
"""What the methods that also edit a generative captioner declare (`task_logits` is token-level for it)."""


def caption_tokens(model: CaptionerModel, batch: Batch) -> tuple[Tensor, Tensor]:
    """(N, V) teacher-forced logits and (N,) targets of the batch's caption tokens (padding dropped)."""
    logits, target = model.caption_logits(batch), model.caption_targets(batch)
    keep = target != -100
    return logits[keep], target[keep]


def pair_similarity(model: DualEncoderModel, batch: Batch) -> Tensor:
    """(B, B) logit-scaled similarities of the batch's images (rows) against its captions (columns)."""
    return model.logit_scale() * model.encode_image(batch["image"]) @ model.encode_text(batch["text"]).T


def stacked(similarity: Tensor) -> Tensor:
    """Image-to-caption rows then caption-to-image rows: (2B, B) logits of both retrieval directions."""
    return torch.cat([similarity, similarity.T])


def task_logits(model: Any, run: Run[Any], batch: Batch) -> tuple[Tensor, Tensor]:
    """Logits on the data to forget and their true targets, whose cross-entropy is the task loss.

    Returns:
        (logits, targets): (B, classes) and (B,) for a classifier (forgotten modalities only), (2B, B)
        and (2B,) for a dual encoder (both retrieval directions, the diagonal is the true pair), (N, V)
        and (N,) for a captioner (its N caption tokens, `caption_tokens`).
    """
    if run.kind is CaptionerModel:
        return caption_tokens(model, batch)
    if run.kind is DualEncoderModel:
        n = len(batch["image"])
        target = torch.arange(n, device=batch["image"].device)
        return stacked(pair_similarity(model, batch)), torch.cat([target, target])
    return model(present_only(batch, run.data.modalities)), batch["label"]


def output_logits(model: Any, run: Run[Any], batch: Batch) -> Tensor:
    """The model's logits on a batch with every modality it has: fused class logits, or the stacked
    similarity logits of both retrieval directions (what a teacher's outputs are compared on)."""
    if run.kind is DualEncoderModel:
        return stacked(pair_similarity(model, batch))
    if run.kind is CaptionerModel:
        return caption_tokens(model, batch)[0]
    return model(batch)


def task_loss(model: Any, run: Run[Any], batch: Batch) -> Tensor:
    """Cross-entropy of `task_logits`: CE of the forgotten modalities, or the pairs' contrastive loss."""
    logits, target = task_logits(model, run, batch)
    return F.cross_entropy(logits, target)


def random_targets(run: Run[Any], logits: Tensor, targets: Tensor) -> Tensor:
    """Wrong-on-purpose targets drawn from the global (seeded) RNG, for random-label unlearning.

    A classifier's samples get uniform random classes (they may equal the truth, as in SalUn); a dual
    encoder's captions are re-paired at random: image i is paired with caption pi(i), so caption j's
    target is image pi^-1(j).
    """
    if run.kind is DualEncoderModel:
        n = logits.shape[1]
        pi = torch.randperm(n, device=logits.device)
        return torch.cat([pi, torch.argsort(pi)])
    return torch.randint(0, logits.shape[1], targets.shape, device=targets.device)
