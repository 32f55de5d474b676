"""What the bench's unlearning cells share: the request of a cell, and a file lock for work done once."""

from __future__ import annotations

import contextlib
import fcntl
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..data import DatasetSplits, ForgetRequest
from ..data.concepts import caption_concepts, concept_space
from ..data.core import MultimodalDataset
from ..errors import ConfigError, DataError

TOP = 10
"""A concept or group request picks, by its seed, one of the ``TOP`` most frequent concepts or groups."""


def request_for(
    kind: str, splits: DatasetSplits, seed: int, fraction: float = 0.1, concepts: tuple[str, ...] = ()
) -> ForgetRequest:
    """The request of a bench cell.

    On audio-visual data the request is visual-only: a seeded random ``fraction`` of the samples, or the
    images of two fonts chosen by the seed among the printed fonts (the handwritten digits are one group
    too large to be an identity); on data on disk, whose identities are its ``group`` column
    (``groups["identity"]``), the images of the ``seed % count``-th of the sorted identities. On
    image-caption data whole pairs are forgotten: a seeded random ``fraction``, the pairs naming a concept,
    or the pairs of an emoji group, the concept or group being the ``seed % TOP``-th most frequent one (ties
    by name); with ``concepts`` (the phrases a grid on disk names) the concept is ``concepts[seed % len]``.

    Raises:
        ConfigError: a concept request on data with no concept list and no ``concepts``, a phrase no
            training pair names, or an identity request on data with no identities.
    """
    train = splits.train
    pairs = train.captions is not None
    mods = tuple(train.modalities) if pairs else ("image",)
    if kind == "random":
        return ForgetRequest.random_fraction(train, fraction, seed, mods)
    if kind == "concept":
        return _concept(train, seed, concepts)
    if kind == "group":
        counts = Counter(train.groups.get("emoji", []))
        if not counts:
            raise ConfigError(f"{train.name!r} has no emoji groups: a group request needs emoji-captions")
        return ForgetRequest.identities(train, [_frequent(counts, seed)], mods)
    if "image_identity" not in train.groups:
        return _identity(train, seed)
    fonts = sorted(set(train.groups["image_identity"]) - {"handwritten-sklearn"})
    start = seed % len(fonts)
    return ForgetRequest.identities(train, fonts[start : start + 2])


def _concept(train: MultimodalDataset, seed: int, concepts: tuple[str, ...]) -> ForgetRequest:
    """The pairs naming the seed's concept: ``concepts[seed % len]`` when given (a phrase, matched on word
    boundaries), else the ``seed % TOP``-th most frequent concept of the built-in concept list."""
    if concepts:
        phrase = concepts[seed % len(concepts)]
        try:
            return ForgetRequest.concept_pairs(train, phrase)
        except DataError as e:
            raise ConfigError(f"concept {phrase!r}: {e}") from e
    if concept_space(train) is None:
        raise ConfigError(
            f"{train.name!r} has no built-in concept list: a concept request on it needs the grid's 'concepts' "
            "(the phrases to forget)"
        )
    counts = Counter(c for cs in caption_concepts(train) for c in set(cs))
    return ForgetRequest.concept_pairs(train, _frequent(counts, seed))


def _identity(train: MultimodalDataset, seed: int) -> ForgetRequest:
    """The images (visual-only) of the ``seed % count``-th of the sorted identities (``groups["identity"]``,
    a dataset on disk's ``group`` column; samples without one are in no identity)."""
    names = sorted(set(train.groups.get("identity", [])) - {""})
    if not names:
        raise ConfigError(
            f"{train.name!r} has no identities: an identity request needs av-digits' fonts or, on disk, a layout "
            "with a group column (speaker, actor)"
        )
    return ForgetRequest.identities(train, [names[seed % len(names)]])


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
