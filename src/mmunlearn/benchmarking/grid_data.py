"""The data a bench grid names: a built-in set (by name and size) or a dataset on disk in a layout.

A grid on disk is identified in its cells' keys by what its files hold, not by where they lie: the layout,
the source fingerprint the layout cache checks (size and modification time of every annotation and media
file, `mmunlearn.data.layouts.cache.source_fingerprint`) and the decoding options. The fingerprint is taken
once, when the grid is read (`LayoutProbe.of`: the annotations are parsed and the files stat-ed, nothing is
decoded), so a second run costs no decoding and the same files give the same keys wherever the folder is.

A grid's ``layout_options`` (image size, frames, clip length, skip_bad) are loaded through `LayoutRef`, a
`DatasetRef` that carries them (a plain `DatasetRef` loads at the default options).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..data import DATASETS, LAYOUTS, DatasetRef, DatasetSplits
from ..data.concepts import names_phrase
from ..data.layouts import LayoutOptions, load_layout
from ..data.layouts.cache import FORMAT, source_fingerprint
from ..data.layouts.splitting import assign_splits
from ..errors import ConfigError
from ..recipes import Recipe, recipe_for, recipe_for_layout

LAYOUT_SIZE = "full"
"""A grid on disk's ``size``: the one `DatasetRef` and `load_layout` give every dataset on disk."""
LAYOUT_SEED = 0
"""Seed of the splits the files do not give (the bench loads every dataset with data seed 0)."""


@dataclass(frozen=True)
class LayoutProbe:
    """What a grid needs to know of a dataset on disk before loading it.

    Attributes:
        kind: the layout's kind, ``"image-caption"`` or ``"audio-visual"``.
        video: the samples have the ``video`` modality (frame folders), which picks av-digits-video's recipe.
        fingerprint: `source_fingerprint` of the parsed annotations (the layout cache's check of its sources).
        identities: the sorted identities (the layout's ``group`` column) of the training split, when `of`
            was asked for them (an identity request picks one of them); else empty.
        phrase_pairs: for each phrase `of` was given, how many training pairs name it (on word boundaries,
            as `mmunlearn.data.concepts.naming` matches a phrase); else empty.
        train_pairs: the training split's size, when ``identities`` or ``phrase_pairs`` were counted; else 0.
    """

    kind: str
    video: bool
    fingerprint: str
    identities: tuple[str, ...] = ()
    phrase_pairs: tuple[int, ...] = ()
    train_pairs: int = 0

    @staticmethod
    def of(path: str, layout: str, phrases: tuple[str, ...] = (), identities: bool = False) -> LayoutProbe:
        """Parse the layout's annotations at ``path`` (no media decoded) and fingerprint its files; with
        ``phrases`` or ``identities``, also draw the splits (as the load does) to count the training split's
        pairs naming each phrase and list its identities.

        Raises:
            UnknownNameError: an unknown layout.
            DataError: a missing or malformed annotation file, or (when the splits are drawn) too few samples.
        """
        parser = LAYOUTS.create(layout)
        plan = parser.parse(Path(path), LayoutOptions(seed=LAYOUT_SEED))
        video = bool(plan.items) and all(it.video is not None for it in plan.items)
        probe = LayoutProbe(parser.kind, video, source_fingerprint(plan))
        if not phrases and not identities:
            return probe
        train = [it for it in assign_splits(plan.items, LAYOUT_SEED)[0] if it.split == "train"]
        groups = tuple(sorted({it.group for it in train if it.group})) if identities else ()
        counts = tuple(sum(names_phrase(it.caption or "", p) for it in train) for p in phrases)
        return LayoutProbe(probe.kind, video, probe.fingerprint, groups, counts, len(train))


@dataclass(frozen=True)
class LayoutRef(DatasetRef):
    """A dataset on disk loaded at given decoding options (`DatasetRef` loads at the defaults).

    Attributes:
        options: the `LayoutOptions` of the load (their ``seed`` is the ref's ``seed``, their ``skip_bad``
            its ``skip_bad``).
    """

    options: LayoutOptions = field(default_factory=LayoutOptions)

    def load(self, data_dir: str | os.PathLike[str] | None = None, progress: bool = False) -> DatasetSplits:
        """The splits, decoded at the ref's options (`load_layout`)."""
        assert self.layout is not None
        o = self.options
        return load_layout(self.name, self.layout, seed=self.seed, image_size=o.image_size, frames=o.frames,
                           clip_seconds=o.clip_seconds, data_dir=data_dir, skip_bad=self.skip_bad,
                           progress=progress)  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        """`DatasetRef.provenance` plus ``layout_options``, the decoding options (not the seed)."""
        options = {k: v for k, v in asdict(self.options).items() if k not in ("seed", "skip_bad")}
        return {**super().provenance(), "layout_options": options}


class GridData(Protocol):
    """The fields of a grid that name its data (read-only: the grids are frozen)."""

    @property
    def dataset(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def layout(self) -> str | None: ...
    @property
    def probe(self) -> LayoutProbe | None: ...


def layout_options(grid: GridData) -> LayoutOptions:
    """The decoding options of a grid on disk: the defaults with the grid's ``layout_options`` (a grid
    without that field, e.g. a protect grid, decodes at the defaults), data seed `LAYOUT_SEED`."""
    given: Mapping[str, Any] = getattr(grid, "layout_options", None) or {}
    return LayoutOptions(**{**given, "seed": LAYOUT_SEED})


def probe_of(grid: GridData) -> LayoutProbe:
    """The grid's probe: the one taken when it was read, else taken now (a grid built in code)."""
    assert grid.layout is not None
    return grid.probe if grid.probe is not None else LayoutProbe.of(grid.dataset, grid.layout)


def data_ref(grid: GridData) -> DatasetRef:
    """How to load the grid's data (data seed 0, as every bench dataset): a `LayoutRef` where the grid's
    decoding options are not the defaults."""
    if grid.layout is None:
        return DatasetRef(grid.dataset, grid.size, 0)
    options = layout_options(grid)
    if options == LayoutOptions(seed=LAYOUT_SEED):
        return DatasetRef(grid.dataset, LAYOUT_SIZE, LAYOUT_SEED, grid.layout)
    return LayoutRef(grid.dataset, LAYOUT_SIZE, LAYOUT_SEED, grid.layout, options.skip_bad, options)


def display_name(path: str) -> str:
    """A dataset folder's name (``flickr8k``), or for an annotation file its folder and name
    (``mydata/captions.csv``): short enough for a title, distinct for two tables of one folder."""
    p = Path(path)
    return p.name if p.is_dir() or not p.parent.name else f"{p.parent.name}/{p.name}"


def data_label(grid: GridData) -> str:
    """The data in titles and records: the built-in name, or ``"<name> [<layout>]"`` (``"flickr8k [karpathy]"``)."""
    return grid.dataset if grid.layout is None else f"{display_name(grid.dataset)} [{grid.layout}]"


def data_key(grid: GridData) -> str:
    """The data's part of a cell key: ``"<name>/<size>"``, or ``"<name>[<layout>]"`` for data on disk
    (no absolute path: the same files elsewhere resume the same cells; the fingerprint is in the key's hash)."""
    if grid.layout is None:
        return f"{grid.dataset}/{grid.size}"
    return f"{display_name(grid.dataset)}[{grid.layout}]"


def data_slug(grid: GridData) -> str:
    """The data's part of a folder or study name: ``"<name>-<size>"``, or ``"<name>-<layout>"`` on disk
    (characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``)."""
    if grid.layout is None:
        return f"{grid.dataset}-{grid.size}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{display_name(grid.dataset)}-{grid.layout}")


def data_identity(grid: GridData) -> Any:
    """What decides the data's values, for the cells' settings: a built-in set's version, or for data on
    disk the layout, the source fingerprint, the decoding options and the cache format."""
    if grid.layout is None:
        return DATASETS.get(grid.dataset).version  # type: ignore[attr-defined]
    options = asdict(layout_options(grid))
    return {"layout": grid.layout, "fingerprint": probe_of(grid).fingerprint, "options": options, "format": FORMAT}


def data_provenance(grid: GridData) -> dict[str, Any]:
    """The record's account of the data (in ``extras["data"]``): a built-in name and size, or the absolute
    path, the layout and the fingerprint of a dataset on disk, and its ``layout_options`` where they are not
    the defaults."""
    if grid.layout is None:
        return {"dataset": grid.dataset, "size": grid.size}
    out = {"dataset": grid.dataset, "layout": grid.layout, "fingerprint": probe_of(grid).fingerprint}
    given = dict(getattr(grid, "layout_options", None) or {})
    return {**out, "layout_options": given} if given else out


def grid_recipe(grid: GridData, model: str | None) -> Recipe:
    """The training recipe of the grid's data: the built-in set's, or the recipe of the layout's kind
    (`recipe_for_layout`, which `recipe_for_data` agrees with on the loaded data)."""
    if grid.layout is None:
        return recipe_for(grid.dataset, model)
    return recipe_for_layout(grid.layout, model, probe_of(grid).video)


def modalities(grid: GridData) -> tuple[str, ...]:
    """The modalities of the grid's data: the built-in builder's, or those of the layout's kind."""
    if grid.layout is None:
        return tuple(getattr(DATASETS.get(grid.dataset), "modalities", ()))
    probe = probe_of(grid)
    if probe.kind == "image-caption":
        return ("image", "text")
    return ("image", "audio", "video") if probe.video else ("image", "audio")


def resolve_path(given: str, base: Path | None, layout: str) -> str:
    """A grid's ``dataset`` path, absolute: relative paths are relative to ``base`` (the YAML file's folder;
    None: the working folder).

    Raises:
        ConfigError: the path does not exist.
    """
    path = Path(given).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.exists():
        where = f" (relative paths are relative to {base})" if base is not None else ""
        raise ConfigError(f"dataset path {str(path)!r} of the {layout} grid does not exist{where}")
    return str(path.resolve())
