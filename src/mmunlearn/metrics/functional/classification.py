"""Classification metrics."""

from __future__ import annotations

from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy.

    Args:
        logits: (N, C) scores.
        labels: (N,) int64 true classes.

    Returns:
        Share of rows whose arg-max is the label, in [0, 1] (0.0 for N = 0).
    """
    if len(labels) == 0:
        return 0.0
    return float((logits.argmax(dim=1) == labels).double().mean())
