"""The data a bench grid names: a built-in set (by name and size) or a dataset on disk in a layout.

A grid on disk is identified in its cells' keys by what its files hold, not by where they lie: the layout,
the source fingerprint the layout cache checks (size and modification time of every annotation and media
file, `mmunlearn.data.layouts.cache.source_fingerprint`) and the decoding options. The fingerprint is taken
once, when the grid is read (`LayoutProbe.of`: the annotations are parsed and the files stat-ed, nothing is
decoded), so a second run costs no decoding and the same files give the same keys wherever the folder is.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ..data import DATASETS, LAYOUTS, DatasetRef
from ..data.layouts import LayoutOptions
from ..data.layouts.cache import FORMAT, source_fingerprint
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
    """

    kind: str
    video: bool
    fingerprint: str

    @staticmethod
    def of(path: str, layout: str) -> LayoutProbe:
        """Parse the layout's annotations at ``path`` (no media decoded) and fingerprint its files.

        Raises:
            UnknownNameError: an unknown layout.
            DataError: a missing or malformed annotation file.
        """
        parser = LAYOUTS.create(layout)
        plan = parser.parse(Path(path), LayoutOptions(seed=LAYOUT_SEED))
        video = bool(plan.items) and all(it.video is not None for it in plan.items)
        return LayoutProbe(parser.kind, video, source_fingerprint(plan))


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


def probe_of(grid: GridData) -> LayoutProbe:
    """The grid's probe: the one taken when it was read, else taken now (a grid built in code)."""
    assert grid.layout is not None
    return grid.probe if grid.probe is not None else LayoutProbe.of(grid.dataset, grid.layout)


def data_ref(grid: GridData) -> DatasetRef:
    """How to load the grid's data (data seed 0, as every bench dataset)."""
    if grid.layout is None:
        return DatasetRef(grid.dataset, grid.size, 0)
    return DatasetRef(grid.dataset, LAYOUT_SIZE, LAYOUT_SEED, grid.layout)


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
    options = asdict(LayoutOptions(seed=LAYOUT_SEED))
    return {"layout": grid.layout, "fingerprint": probe_of(grid).fingerprint, "options": options, "format": FORMAT}


def data_provenance(grid: GridData) -> dict[str, Any]:
    """The record's account of the data (in ``extras["data"]``): a built-in name and size, or the absolute
    path, the layout and the fingerprint of a dataset on disk."""
    if grid.layout is None:
        return {"dataset": grid.dataset, "size": grid.size}
    return {"dataset": grid.dataset, "layout": grid.layout, "fingerprint": probe_of(grid).fingerprint}


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
