"""Representation similarity."""

from __future__ import annotations

from torch import Tensor


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two feature matrices of the same samples.

    Args:
        x: (N, D1) features.
        y: (N, D2) features.

    Returns:
        CKA in [0, 1]; 1 means the representations agree up to rotation and isotropic scaling.
    """
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).pow(2).sum()
    norm = (x.T @ x).pow(2).sum().sqrt() * (y.T @ y).pow(2).sum().sqrt()
    return float(cross / norm) if norm > 0 else 0.0
