"""The dataset-builder interface and the dataset registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..registry import Registry
from .core import SplitData

SPLITS = ("train", "val", "test")
SIZES = ("small", "full")


@dataclass
class BuiltData:
    """A builder's complete output.

    Attributes:
        splits: ``{"train": ..., "val": ..., "test": ...}``; val comes from the training distribution
            (same fonts/voices) and is never trained on; test holds out identities where the set has them.
        vocab: the word-level vocabulary (``[PAD]``, ``[UNK]``, words...) when the set has text.
        text_len: token row length (longest caption plus the trigger reserve) when the set has text.
        meta: free-form, JSON-ready provenance (fonts, voices, package versions...).
    """

    splits: dict[str, SplitData]
    vocab: list[str] | None = None
    text_len: int | None = None
    meta: dict[str, object] = field(default_factory=dict)


class DatasetBuilder:
    """Base class of built-in dataset builders; subclass, set the class attributes, register.

    A builder must be deterministic: the same (size, seed) gives bit-identical tensors on any machine
    with the same package versions. Bump ``version`` whenever the output changes, so old caches rebuild.
    """

    name: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]
    num_classes: ClassVar[int | None] = None
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        """Generate the dataset. ``size`` is ``"small"`` (tests, seconds) or ``"full"`` (benchmarks)."""
        raise NotImplementedError


DATASETS: Registry[DatasetBuilder] = Registry("dataset")
