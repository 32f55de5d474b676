"""`BenchData`: the datasets of one bench process, each loaded once and shared by its cells."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..data import DatasetRef, DatasetSplits


@dataclass
class BenchData:
    """The datasets of a bench, each loaded once (built, or decoded from its layout, on first use).

    Attributes:
        data_dir: the dataset cache root (None: ``$MMUNLEARN_DATA`` or the user cache).
        loaded: what was loaded, by reference.
    """

    data_dir: str | os.PathLike[str] | None = None
    loaded: dict[DatasetRef, DatasetSplits] = field(default_factory=dict)

    def __call__(self, ref: DatasetRef) -> DatasetSplits:
        """The splits of ``ref`` (a built-in set or a dataset on disk), loaded on the first call."""
        if ref not in self.loaded:
            self.loaded[ref] = ref.load(self.data_dir)
        return self.loaded[ref]
