"""Cross-modal retrieval metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def recall_at_k(similarity: Tensor, targets: Tensor, k: int) -> float:
    """Recall@k: share of queries whose true candidate ranks in the top ``k``.

    Ties are counted against the query: the rank of the target is the number of *other* candidates
    scoring at least as high, so a model that gives every candidate the same score gets chance-level
    recall, not a perfect one.

    Args:
        similarity: (Q, N) scores of each query against each candidate.
        targets: (Q,) int64 index of each query's true candidate.
        k: cut-off, >= 1.

    Returns:
        Recall in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    true = similarity.gather(1, targets.unsqueeze(1))
    at_least = (similarity >= true).sum(dim=1) - 1  # other candidates as good as the target
    return float((at_least < k).double().mean())


def chance_recall(num_candidates: int, k: int) -> float:
    """Recall@k of random guessing among ``num_candidates`` with one true candidate: k / N."""
    return min(1.0, k / num_candidates)


def retrieval_recalls(image_emb: Tensor, text_emb: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Image-to-text and text-to-image Recall@k of matched pairs (row i of each is a pair).

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (N, D) text embeddings.
        ks: cut-offs.

    Returns:
        ``{"i2t_r1": ..., "t2i_r1": ..., ..., "mean_recall": mean of all of them}``.
    """
    sim = image_emb @ text_emb.T
    targets = torch.arange(len(sim))
    out = {f"i2t_r{k}": recall_at_k(sim, targets, k) for k in ks}
    out.update({f"t2i_r{k}": recall_at_k(sim.T, targets, k) for k in ks})
    out["mean_recall"] = sum(out.values()) / len(out)
    return out
