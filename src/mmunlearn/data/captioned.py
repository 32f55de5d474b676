"""What the image-caption builders (shapes-captions, emoji-captions) share: sizes, rendering, splits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..runtime import progress as show_progress
from .builder import SPLITS
from .core import SplitData
from .tokenizer import WordTokenizer

IMAGE_SIZE = 32
# Token positions left free after the longest caption, so a protector can prepend a trigger.
TRIGGER_RESERVE = 8
Scene = TypeVar("Scene")


def check_size(name: str, sizes: Mapping[str, dict[str, int]], size: str) -> dict[str, int]:
    """The split sizes of ``size``.

    Raises:
        ValueError: ``size`` is not one of the known sizes.
    """
    if size not in sizes:
        raise ValueError(f"unknown size {size!r} for {name!r}; valid sizes: {', '.join(sizes)}")
    return sizes[size]


def render_splits(
    name: str,
    counts: Mapping[str, int],
    seed: int,
    draw: Callable[[np.random.Generator, int, bool], list[Scene]],
    render: Callable[[Scene, np.random.Generator], np.ndarray],
    progress: bool,
) -> tuple[dict[str, list[Scene]], dict[str, np.ndarray]]:
    """Draw and render the scenes of every split.

    Each split has its own random stream (``[seed, k]``), so a split does not change when another
    one's size does; test scenes are drawn without replacement.

    Args:
        draw: ``(rng, n, unique) -> scenes``.
        render: ``(scene, rng) -> uint8 (IMAGE_SIZE, IMAGE_SIZE, 3)``.

    Returns:
        split -> scenes, and split -> uint8 images (N, H, W, 3).
    """
    drawn: dict[str, list[Scene]] = {}
    images: dict[str, np.ndarray] = {}
    bar = show_progress(total=sum(counts.values()), desc=name, enabled=progress)
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, k])
        drawn[split] = draw(rng, counts[split], split == "test")
        out = np.empty((counts[split], IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for i, scene in enumerate(drawn[split]):
            out[i] = render(scene, rng)
            bar.update()
        images[split] = out
    bar.close()
    return drawn, images


def caption_splits(
    prefix: str,
    drawn: Mapping[str, Sequence[Scene]],
    images: Mapping[str, np.ndarray],
    caption: Callable[[Scene], str],
    groups: Callable[[Sequence[Scene]], dict[str, list[str]]],
) -> tuple[dict[str, SplitData], WordTokenizer]:
    """Image-caption splits: ids ``<prefix>-<split>-<i>``, images (N, 3, H, W), token ids from one tokenizer.

    The tokenizer is built over every split's captions with `TRIGGER_RESERVE` free positions.
    """
    captions = {s: [caption(sc) for sc in drawn[s]] for s in SPLITS}
    tokenizer = WordTokenizer.build([c for s in SPLITS for c in captions[s]], reserve=TRIGGER_RESERVE)
    splits = {
        s: SplitData(
            ids=[f"{prefix}-{s}-{i:06d}" for i in range(len(drawn[s]))],
            tensors={
                "image": torch.from_numpy(images[s]).permute(0, 3, 1, 2).contiguous(),
                "text": tokenizer.encode(captions[s]),
            },
            labels=None,
            captions=captions[s],
            groups=groups(drawn[s]),
        )
        for s in SPLITS
    }
    return splits, tokenizer


def base_meta(name: str, version: int, size: str, seed: int, counts: Mapping[str, int]) -> dict[str, Any]:
    """The provenance fields every image-caption builder records."""
    return {"name": name, "version": version, "size": size, "seed": seed, "counts": dict(counts)}
