"""Membership-inference scores."""

from __future__ import annotations

import numpy as np
import torch
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
