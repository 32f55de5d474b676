"""What the bench's unlearning cells share: the request of a cell, and a file lock for work done once."""

from __future__ import annotations

import contextlib
import fcntl
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..data import DatasetSplits, ForgetRequest
from ..data.concepts import caption_concepts
from ..errors import ConfigError

TOP = 10
"""A concept or group request picks, by its seed, one of the ``TOP`` most frequent concepts or groups."""


def request_for(kind: str, splits: DatasetSplits, seed: int, fraction: float = 0.1) -> ForgetRequest:
    """The request of a bench cell.

    On audio-visual data the request is visual-only: a seeded random ``fraction`` of the samples, or the
    images of two fonts chosen by the seed among the printed fonts (the handwritten digits are one group
    too large to be an identity). On image-caption data whole pairs are forgotten: a seeded random
    ``fraction``, the pairs naming a concept, or the pairs of an emoji group, the concept or group being
    the ``seed % TOP``-th most frequent one (ties by name).
    """
    train = splits.train
    pairs = train.captions is not None
    mods = tuple(train.modalities) if pairs else ("image",)
    if kind == "random":
        return ForgetRequest.random_fraction(train, fraction, seed, mods)
    if kind == "concept":
        counts = Counter(c for cs in caption_concepts(train) for c in set(cs))
        return ForgetRequest.concept_pairs(train, _frequent(counts, seed))
    if kind == "group":
        counts = Counter(train.groups.get("emoji", []))
        if not counts:
            raise ConfigError(f"{train.name!r} has no emoji groups: a group request needs emoji-captions")
        return ForgetRequest.identities(train, [_frequent(counts, seed)], mods)
    fonts = sorted(set(train.groups["image_identity"]) - {"handwritten-sklearn"})
    start = seed % len(fonts)
    return ForgetRequest.identities(train, fonts[start : start + 2])


def _frequent(counts: Counter[str], seed: int) -> str:
    """The ``seed % TOP``-th most frequent name (ties broken by name)."""
    ranked = sorted(counts, key=lambda c: (-counts[c], c))[:TOP]
    return ranked[seed % len(ranked)]


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created) for the block; another holder makes this one wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
