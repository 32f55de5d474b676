"""Loss terms of the dual-encoder methods: CCU's pair terms (a)-(c), the retrieval-distribution KL that
CCU's (b) shares with CLIPErase's consistency module, and the true-pair cosines their calibration reads.

Everything here works on L2-normalised embeddings: ``v`` (images) and ``t`` (captions), row i of each
being a pair. ``scale`` is a dual encoder's logit scale (its inverse temperature). See
docs/methods/ccu.md ("Dual encoders") for the formulation these functions implement.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import MultimodalDataset
from ..metrics.outputs import pair_embeddings
from ..runtime import Batch


def complete_pairs(batch: Batch) -> Batch:
    """The rows of ``batch`` in which every modality is present (the whole batch when all are).

    A dual encoder's retained data are pairs; a request that forgets one modality of a pair leaves that
    pair in the gold-standard set with the modality zeroed, and such a row is no pair to keep.
    """
    flags = [v for k, v in batch.items() if k.startswith("present_")]
    if not flags:
        return batch
    keep = torch.stack(flags).all(0)
    if bool(keep.all()):
        return batch
    return {k: v[keep] for k, v in batch.items()}


def true_pair_cosines(model: Any, dataset: MultimodalDataset) -> Tensor:
    """(N,) cosine of each pair's image and caption embeddings, in eval mode without gradient, on the CPU."""
    v, t = pair_embeddings(model, dataset)
    return (v * t).sum(1)


def info_nce(
    v: Tensor, t: Tensor, scale: Tensor, extra_t: Tensor | None = None, extra_v: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE of the pairs (v_i, t_i), with optional extra negative candidates.

    Image i is scored against ``[t; extra_t]`` and caption i against ``[v; extra_v]``; the target is the
    true pair. Without extras this is CLIP's loss (`clip_loss`).

    Returns:
        Scalar: the mean of the image-to-text and text-to-image cross-entropies.
    """
    target = torch.arange(len(v), device=v.device)
    texts = t if extra_t is None else torch.cat([t, extra_t])
    images = v if extra_v is None else torch.cat([v, extra_v])
    return (F.cross_entropy(scale * v @ texts.T, target) + F.cross_entropy(scale * t @ images.T, target)) / 2


def retrieval_kl(target_logits: Tensor, logits: Tensor) -> Tensor:
    """KL(target || current) of the row softmax of a (B, B) image-to-text logit matrix plus that of its
    transpose (text-to-image), each averaged over its B rows: CLIPErase's consistency module and CCU's (b).
    """

    def kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
        return F.kl_div(F.log_softmax(q_logits, 1), F.log_softmax(p_logits, 1), reduction="batchmean", log_target=True)

    return kl(target_logits, logits) + kl(target_logits.T, logits.T)


def pair_inverse_contrastive(
    v: Tensor, t: Tensor, keys_t: Tensor, keys_v: Tensor, tau: float, scale: Tensor | float | None = None
) -> Tensor:
    """CCU's term (a) for pairs: inverse contrastive learning, the own partner as the one negative.

    Image i is the anchor, the retained captions k its positives and its own caption t_i the negative:
    ``sum_k w_ik * -log(exp(v_i.k/tau) / (exp(v_i.k/tau) + exp(v_i.t_i/tau)))``; caption i likewise
    against the retained images with its own image v_i as the negative. A pair's loss is the mean of its
    two directions. The positive weights w_i are uniform (``scale=None``), or the anchor's retrieval
    distribution over the keys, ``softmax_k(scale * v_i.k)`` without gradient: the image is moved towards
    the retained captions it already resembles most (what a model that never saw the pair would retrieve
    for it), not towards the average caption.

    Args:
        v, t: (B, D) embeddings of the pairs to forget.
        keys_t: (K, D) retained captions (the image anchors' positives).
        keys_v: (K, D) retained images (the caption anchors' positives).
        tau: temperature.
        scale: inverse temperature of the positive weights (None: uniform weights).

    Returns:
        (B,) per-pair losses (0 without keys).
    """
    if len(keys_t) == 0:
        return v.sum(1) * 0

    def direction(anchor: Tensor, own: Tensor, keys: Tensor) -> Tensor:
        sim = anchor @ keys.T
        # -log(e^a / (e^a + e^b)) = softplus(b - a)
        per = F.softplus((own - sim) / tau)
        if scale is None:
            return per.mean(1)
        return (per * torch.softmax(scale * sim.detach(), 1)).sum(1)

    own = (v * t).sum(1, keepdim=True)
    return (direction(v, own, keys_t) + direction(t, own, keys_v)) / 2


def pair_excess(cosines: Tensor, targets: Tensor) -> Tensor:
    """How far each pair's true-pair cosine still is above its calibration target: ``max(c - target, 0)``."""
    return (cosines - targets).clamp_min(0)


def pair_calibration_weights(cosines_now: Tensor, targets: Tensor, mean_excess: float) -> Tensor:
    """CCU's soft gate for pairs: each pair's excess over its target relative to U's initial mean excess.

    A pair at or below its target (forgotten to the level of held-out pairs) gets 0; at the start the
    weights average 1 over U, and each fades out as its pair approaches its target.
    """
    return pair_excess(cosines_now, targets) / mean_excess
