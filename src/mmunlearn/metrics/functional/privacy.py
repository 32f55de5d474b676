"""Membership-inference scores."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.svm import SVC
from torch import Tensor


def true_label_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability of the true label. Returns (N,)."""
    return torch.softmax(logits.double(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)


def svc_mia_efficacy(member: Tensor, non_member: Tensor, target: Tensor) -> float:
    """The SalUn / Unlearn-Sparse "MIA-Efficacy": share of ``target`` predicted non-member.

    An RBF SVC (C=3, gamma="auto", as in the published code) is fitted on 1-D features of known members
    (label 1) and non-members (label 0), then applied to the target samples.

    Args:
        member: (M,) features of members (the protocol: true-label confidence on retain samples).
        non_member: (K,) features of non-members (test samples).
        target: (T,) features of the samples under audit (the unlearn set).

    Returns:
        Fraction of ``target`` classified as non-member, in [0, 1]; higher means more forgotten, and the
        reference value is the retrained model's, not 1.
    """
    x = np.concatenate([member.numpy(), non_member.numpy()]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member)), np.zeros(len(non_member))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(target.numpy().reshape(-1, 1)).mean())


def auc(positive: Tensor, negative: Tensor) -> float:
    """Area under the ROC curve of scores: P(score(pos) > score(neg)) + 0.5 P(equal), by ranks.

    Args:
        positive: (P,) scores of the positive class.
        negative: (N,) scores of the negative class.

    Returns:
        AUC in [0, 1].
    """
    scores = torch.cat([positive, negative]).double()
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    sorted_scores = scores[order]
    # average ranks over ties (1-based)
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    p, n = len(positive), len(negative)
    return float((ranks[:p].sum() - p * (p + 1) / 2) / (p * n))


def loss_threshold_auc(member_losses: Tensor, non_member_losses: Tensor) -> float:
    """AUC of the loss-threshold attack (Yeom et al. 2018): lower loss = member.

    Returns:
        AUC of members vs non-members with score = -loss; 0.5 means indistinguishable.
    """
    return auc(-member_losses, -non_member_losses)


def ks_statistic(a: Tensor, b: Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs of two samples.

    The same figure as ``scipy.stats.ks_2samp(a, b).statistic`` (ties included).

    Args:
        a: (N,) values, N >= 1.
        b: (M,) values, M >= 1.

    Returns:
        sup_x |F_a(x) - F_b(x)| in [0, 1]; 0 for samples with the same empirical distribution.

    Raises:
        ValueError: an empty sample.
    """
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"the KS statistic needs two non-empty samples, got {len(a)} and {len(b)} values")
    a, b = torch.sort(a.double().flatten()).values, torch.sort(b.double().flatten()).values
    points = torch.cat([a, b])  # both CDFs are step functions that only jump at these points
    cdf_a = torch.searchsorted(a, points, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, points, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def fixed_negative_infonce(
    image_emb: Tensor,
    text_emb: Tensor,
    negative_image: Tensor,
    negative_text: Tensor,
    scale: float,
    exclude: Tensor | None = None,
) -> Tensor:
    """Each pair's symmetric InfoNCE loss against one fixed set of negative pairs (a per-pair MIA score).

    In training, a pair's contrastive loss depends on the rest of its batch; here every pair is scored
    against the same K negatives, so its loss is a function of the pair alone::

        loss_i = 0.5 * [CE(scale * v_i . [t_i, T_neg], 0) + CE(scale * t_i . [v_i, V_neg], 0)]

    Args:
        image_emb: (N, D) L2-normalised image embeddings of the pairs (v).
        text_emb: (N, D) their text embeddings (t).
        negative_image: (K, D) image embeddings of the negative pairs (V_neg).
        negative_text: (K, D) their text embeddings (T_neg).
        scale: the model's logit scale (inverse temperature).
        exclude: optional (N, K) bool, True where negative k is pair i itself (it is left out of pair
            i's candidates, so that scoring the pool the negatives came from is not biased).

    Returns:
        (N,) float64 losses.
    """
    v, t = image_emb.double(), text_emb.double()
    nv, nt = negative_image.double(), negative_text.double()
    pos = scale * (v * t).sum(1, keepdim=True)
    i2t = scale * v @ nt.T
    t2i = scale * t @ nv.T
    if exclude is not None:
        i2t = i2t.masked_fill(exclude, float("-inf"))
        t2i = t2i.masked_fill(exclude, float("-inf"))
    target = torch.zeros(len(v), dtype=torch.long)
    loss_i2t = F.cross_entropy(torch.cat([pos, i2t], 1), target, reduction="none")
    loss_t2i = F.cross_entropy(torch.cat([pos, t2i], 1), target, reduction="none")
    return 0.5 * (loss_i2t + loss_t2i)
