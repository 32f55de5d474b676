"""Toy in-memory datasets for unit tests (no builder, no disk)."""

from __future__ import annotations

import torch

from mmunlearn.data.core import MultimodalDataset


def make_av(n: int = 64, seed: int = 0, name: str = "tiny-av") -> MultimodalDataset:
    """A learnable toy audio-visual set: the class is written into both modalities with noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    image = torch.rand(n, 1, 16, 16, generator=g) * 0.3
    audio = torch.randn(n, 8, 16, generator=g) * 0.3
    for c in range(4):
        image[y == c, :, c * 4 : c * 4 + 4, :] += 0.7
        audio[y == c, c * 2 : c * 2 + 2, :] += 1.5
    groups = {"font": [f"font{i % 3}" for i in range(n)], "voice": [f"voice{i % 2}" for i in range(n)]}
    ids = [f"{name}-{i:04d}" for i in range(n)]
    return MultimodalDataset(ids, {"image": image, "audio": audio}, y, groups=groups, num_classes=4, name=name)
