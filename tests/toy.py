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


def make_pairs(n: int = 64, seed: int = 0, split: str = "train", colors: int = 3) -> MultimodalDataset:
    """A toy shapes-captions split: real rendered scenes and captions over ``colors`` colours x 5 shapes.

    It is named ``shapes-captions/tiny/<split>``, so it has the shapes-captions concept space; the
    vocabulary covers every caption of the full dataset, so splits built with other seeds share it.
    """
    import numpy as np

    from mmunlearn.data import shapes_captions as sc
    from mmunlearn.data.tokenizer import WordTokenizer

    palette = list(sc.COLORS)[:colors]
    scenes = [s for s in sc.all_scenes() if set(s.colors) <= set(palette)]
    rng = np.random.default_rng(seed)
    drawn = sc.sample_scenes(rng, scenes, n, unique=False)
    images = np.stack([sc.render_scene(s, rng) for s in drawn])
    captions = [s.caption() for s in drawn]
    tokenizer = WordTokenizer.build([s.caption() for s in sc.all_scenes()], reserve=0)
    return MultimodalDataset(
        [f"toy-{split}-{seed}-{i:04d}" for i in range(n)],
        {"image": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), "text": tokenizer.encode(captions)},
        captions=captions,
        groups={"relation": [s.relation for s in drawn]},
        vocab=tokenizer.vocab,
        name=f"shapes-captions/tiny/{split}",
    )


def tiny_dual_encoder(data: MultimodalDataset, seed: int = 0):
    """A small random-initialised `DualEncoder` for ``data``'s images and vocabulary."""
    from mmunlearn.models import build_model

    return build_model(
        "dual-encoder", seed, image_shape=list(data.inputs["image"].shape[1:]), vocab=list(data.vocab or []),
        text_len=data.inputs["text"].shape[1], embed_dim=16, width=4, text_dim=16, text_layers=1,
    )  # fmt: skip


def tiny_captioner(data: MultimodalDataset, seed: int = 0, **over):
    """A tiny random-initialised `Captioner` for ``data``'s images and vocabulary (``over``: config fields)."""
    from mmunlearn.models import build_model

    tiny = {"enc_dim": 16, "dec_dim": 16, "enc_layers": 1, "dec_layers": 1, "heads": 2}
    return build_model(
        "captioner", seed, image_shape=list(data.inputs["image"].shape[1:]), vocab=list(data.vocab or []),
        text_len=data.inputs["text"].shape[1], **{**tiny, **over},
    )  # fmt: skip
