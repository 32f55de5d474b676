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
SIZED = "random@"
"""A random request of its own size: ``random@F`` forgets a seeded share ``F`` (in (0, 1)) of the training samples,
whatever the grid's ``fraction`` (which plain ``random`` keeps)."""


def request_kind(name: str) -> tuple[str, float | None]:
    """A request name's kind and own fraction: ``"random@0.05"`` -> ``("random", 0.05)``; any other name ->
    ``(name, None)`` (a plain ``random`` takes the grid's ``fraction``).

    Raises:
        ConfigError: ``random@F`` with ``F`` not a number in (0, 1).
    """
    if not name.startswith(SIZED):
        return name, None
    text = name.removeprefix(SIZED)
    try:
        fraction = float(text)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction < 1:  # NaN (not a number) fails too
        raise ConfigError(f"request {name!r}: the share after '@' must be a number in (0, 1), e.g. random@0.05")
    return "random", fraction


def canonical_request(name: str) -> str:
    """One spelling per request, so that its cells have one key: ``random@5e-2`` and ``random@0.050`` are
    ``random@0.05`` (the shortest decimal of the float); any other name is kept.

    Raises:
        ConfigError: as `request_kind`.
    """
    _, fraction = request_kind(name)
    return name if fraction is None else f"{SIZED}{fraction!r}"


def request_fraction(name: str, fraction: float) -> float:
    """The share of the training samples a request of this name draws: its own (``random@F``) or ``fraction``."""
    own = request_kind(name)[1]
    return fraction if own is None else own


def request_for(
    kind: str, splits: DatasetSplits, seed: int, fraction: float = 0.1, concepts: tuple[str, ...] = ()
) -> ForgetRequest:
    """The request of a bench cell (``kind`` a request name: ``random@F`` is a random request of share ``F``).

    On audio-visual data the request is visual-only: a seeded random ``fraction`` of the samples, the
    images of two fonts chosen by the seed among the printed fonts (the handwritten digits are one group
    too large to be an identity; on data on disk, whose identities are its ``group`` column
    (``groups["identity"]``), the images of the ``seed % count``-th of the sorted identities), or
    (``class``) the images of every training sample of class ``seed % num_classes``. On
    image-caption data whole pairs are forgotten: a seeded random ``fraction``, the pairs naming a concept,
    or the pairs of an emoji group, the concept or group being the ``seed % TOP``-th most frequent one (ties
    by name); with ``concepts`` (the phrases a grid on disk names) the concept is ``concepts[seed % len]``.

    Raises:
        ConfigError: a concept request on data with no concept list and no ``concepts``, a phrase no
            training pair names, an identity request on data with no identities, a class request on
            unlabelled or caption data, or a malformed ``random@F``.
    """
    train = splits.train
    pairs = train.captions is not None
    mods = tuple(train.modalities) if pairs else ("image",)
    base, own = request_kind(kind)
    if base == "random":
        return ForgetRequest.random_fraction(train, fraction if own is None else own, seed, mods)
    if kind == "class":
        return _one_class(train, seed)
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


def _one_class(train: MultimodalDataset, seed: int) -> ForgetRequest:
    """The images (visual-only) of every training sample of class ``seed % num_classes`` (the seed names
    the class: no ranking, so no ties to break)."""
    if train.captions is not None or train.labels is None or not train.num_classes:
        raise ConfigError(f"{train.name!r} has no class labels: a class request needs a labelled classifier dataset")
    return ForgetRequest.one_class(train, seed % train.num_classes)


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
