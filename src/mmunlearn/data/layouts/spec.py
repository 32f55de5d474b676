"""What a layout parser produces (a `Plan` of `Item` samples), the loading options and the layout registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ...registry import Registry

SPLIT_ALIASES = {
    "train": "train",
    "restval": "train",  # Karpathy's "restval": COCO val2014 images outside the 5k val / 5k test
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


@dataclass(frozen=True)
class LayoutOptions:
    """Options of `load_layout` that change what is decoded or how it is split (all part of the cache key).

    Attributes:
        seed: seed of every seeded split (the decoded media do not depend on it).
        image_size: side of the square images (and video frames), in pixels.
        frames: number of video frames per clip (audio-visual layouts with frame folders).
        clip_seconds: length of the audio clip cut from the centre of each wav (zero-padded when shorter).
        skip_bad: skip samples whose image, frames or wav are missing or unreadable instead of failing.
    """

    seed: int = 0
    image_size: int = 32
    frames: int = 4
    clip_seconds: float = 1.0
    skip_bad: bool = False


@dataclass(frozen=True)
class Item:
    """One sample as a layout file describes it; media are paths relative to the plan's root.

    Attributes:
        id: unique sample id.
        split: ``train``/``val``/``test``, or None when the layout leaves the split to a seeded draw.
        unit: what a seeded split keeps together (the image of a caption, the clip of a sound).
        image: the image file (for audio-visual clips: the middle frame).
        caption: the caption (image-caption layouts).
        label: the raw label text (audio-visual layouts).
        group: an identity (speaker, actor) where the layout has one.
        audio: the sound file (audio-visual layouts).
        video: the frame folder whose frames make the ``video`` modality (audio-visual layouts).
    """

    id: str
    split: str | None
    unit: str
    image: str
    caption: str | None = None
    label: str | None = None
    group: str | None = None
    audio: str | None = None
    video: str | None = None


@dataclass
class Plan:
    """A parsed dataset: its samples, where their files are, and the files it was parsed from.

    Attributes:
        root: the folder every relative path of the plan is relative to.
        items: the samples in file order.
        sources: annotation files (relative to ``root``), fingerprinted with the media.
        frames: frame folder -> its frame files (relative to ``root``), in frame order.
        notes: layout-specific, JSON-ready provenance recorded in ``DatasetSplits.meta``.
    """

    root: Path
    items: list[Item]
    sources: list[str]
    frames: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)


class Layout:
    """Base class of layout parsers: subclass, set the class attributes, register in `LAYOUTS`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "image-caption" or "audio-visual"
    description: ClassVar[str] = ""

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """Read the layout's annotation files under ``path`` (no media decoding).

        Raises:
            DataError: a missing or malformed annotation file (the message names it).
        """
        raise NotImplementedError


LAYOUTS: Registry[Layout] = Registry("layout")
