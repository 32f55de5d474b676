"""A tiny constructed image-caption set for the protection tests (no builder, no disk)."""

from __future__ import annotations

import torch

from mmunlearn.data.core import MultimodalDataset

VOCAB = ["[PAD]", "[UNK]", *(f"w{i}" for i in range(10))]


def make_captions(
    n: int = 16, seed: int = 0, text_len: int = 8, caption_len: int = 4, side: int = 8
) -> MultimodalDataset:
    """``n`` random image-caption pairs: images on the 1/255 grid, captions of ``caption_len`` real words."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    text = torch.zeros(n, text_len, dtype=torch.long)
    text[:, :caption_len] = torch.randint(2, len(VOCAB), (n, caption_len), generator=g)
    captions = [" ".join(VOCAB[i] for i in row[:caption_len].tolist()) for row in text]
    ids = [f"toy-{i:03d}" for i in range(n)]
    return MultimodalDataset(ids, {"image": images, "text": text}, captions=captions, vocab=VOCAB, name="toy-captions")
