"""`load_dataset`: one call for a built-in dataset (by name) and for a dataset on disk in a published layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .builder import DATASETS, SIZES
from .layouts import LAYOUTS, load_layout
from .layouts.cache import cache_root
from .store import DatasetSplits, cache_path, load_builtin


def load_dataset(
    name: str,
    size: str = "small",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
    layout: str | None = None,
    skip_bad: bool = False,
) -> DatasetSplits:
    """Load a built-in dataset (built on first use, then cached), or with ``layout`` the dataset at path ``name``.

    Args:
        name: registry name (``mmunlearn list`` shows them), or with ``layout`` the dataset's path.
        size: ``"small"`` (tests) or ``"full"`` (benchmarks); ignored with ``layout``.
        seed: generation seed; the same seed rebuilds bit-identical data. With ``layout``: the seed of the
            splits the files do not give.
        data_dir: cache root (default: ``$MMUNLEARN_DATA`` or the user cache folder).
        progress: show a progress bar while building or decoding.
        layout: a name of `mmunlearn.data.LAYOUTS` (karpathy, coco, imagefolder, csv, av-frames, av-csv): the
            files are read with `mmunlearn.data.layouts.load_layout` at its default options.
        skip_bad: with ``layout``: skip unreadable images and sounds (listed in a warning and in
            ``meta["skipped"]``) instead of failing.

    Returns:
        The train, val and test splits.
    """
    if layout is not None:
        return load_layout(name, layout, seed=seed, data_dir=data_dir, progress=progress, skip_bad=skip_bad)
    return load_builtin(name, size, seed, data_dir, progress=progress)


@dataclass(frozen=True)
class DatasetRef:
    """How a checkpoint's or a protection's provenance names its data: a built-in set, or a path in a layout.

    Attributes:
        name: built-in dataset name, or (with ``layout``) the dataset's absolute path.
        size: built-in size (``"small"`` or ``"full"``); ``"full"`` for a dataset on disk.
        seed: generation seed of a built-in set; the split seed of a dataset on disk.
        layout: `LAYOUTS` name for a dataset on disk, None for a built-in set.
        skip_bad: on disk: unreadable images and sounds are skipped (and listed) instead of failing.
    """

    name: str
    size: str = "small"
    seed: int = 0
    layout: str | None = None
    skip_bad: bool = False

    @classmethod
    def of(
        cls, name: str, size: str = "small", seed: int = 0, layout: str | None = None, skip_bad: bool = False
    ) -> DatasetRef:
        """A checked reference (names resolved before any work).

        Raises:
            UnknownNameError: an unknown built-in dataset or layout (the known ones are listed).
            DataError: a negative seed, an unknown size, or a dataset path that does not exist.
        """
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataError(f"the data seed must be an integer, got {seed!r}")
        if seed < 0:
            raise DataError(f"seed must be non-negative, got {seed}")
        if layout is None:
            DATASETS.get(name)
            if size not in SIZES:
                raise DataError(f"unknown dataset size {size!r}; sizes are {', '.join(SIZES)}")
            return cls(name, size, seed)
        LAYOUTS.get(layout)
        path = Path(name).expanduser()
        if not path.exists():
            raise DataError(f"dataset path {path} does not exist (--dataset with --layout {layout} names a path)")
        return cls(str(path.resolve()), "full", seed, layout, skip_bad)

    @classmethod
    def from_provenance(cls, provenance: dict[str, Any]) -> DatasetRef:
        """The reference a provenance records (``dataset``, ``size``, ``data_seed`` and, on disk, ``layout``)."""
        return cls.of(
            provenance["dataset"], provenance.get("size", "small"), provenance.get("data_seed", 0),
            provenance.get("layout"), bool(provenance.get("skip_bad", False)),
        )  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        """The provenance fields naming this data."""
        layout = {"layout": self.layout} if self.layout is not None else {}
        skip = {"skip_bad": True} if self.skip_bad else {}
        return {"dataset": self.name, "size": self.size, "data_seed": self.seed, **layout, **skip}

    def load(self, data_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> DatasetSplits:
        """The splits (see `load_dataset`)."""
        return load_dataset(
            self.name, self.size, self.seed, data_dir, progress=progress, layout=self.layout, skip_bad=self.skip_bad
        )

    def cache_root(self, data_dir: str | os.PathLike[str] | None = None) -> Path:
        """The folder the cache of this data lives in (must be writable for a first load)."""
        if self.layout is not None:
            return cache_root(data_dir)
        return cache_path(self.name, self.size, self.seed, data_dir)
