"""The cells of a bench: one per (scenario, dataset, size, request or victim, seed, row)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..fileio import canonical_json
from ..protectors import PROTECTORS
from ..results import MetricResult
from ..unlearn import UNLEARNERS
from ..victim import VictimConfig
from .config import BenchConfig, Grid, ProtectGrid, UnlearnGrid
from .grid_data import data_identity, data_key, grid_recipe
from .requests import request_fraction


@dataclass(frozen=True)
class Cell:
    """One unit of work, one `RunRecord`.

    Attributes:
        grid: the grid it belongs to.
        seed: the seed of everything in the cell.
        label: the row: ``"original"``, ``"retrain"``, a method or variant label, a tuned row
            (``"<method> (tuned)"``), or a protector.
        request: scenario A's request name (``"random"``, ``"random@0.05"``, ``"identity"``, ``"class"``...):
            the table it shows in (``request random@0.05``) and the key's setting.
        victim: scenario B's `VictimConfig` fields (``regime``, ``image_encoder``, ``defence``...).
    """

    grid: Grid
    seed: int
    label: str
    request: str | None = None
    victim: Mapping[str, Any] = field(default_factory=dict)

    @property
    def setting(self) -> str:
        """The column group: the request (A) or the victim, e.g. ``"cnn"``, ``"resnet+jpeg10"`` (B)."""
        if self.request is not None:
            return self.request
        return victim_label(self.victim)

    @property
    def key(self) -> str:
        """A stable identifier (the store's resume key), including a hash of the row's settings.

        A built-in set is named by its name and size, a dataset on disk by its folder's name and layout
        (``flickr8k[karpathy]``, not its absolute path); its files' fingerprint is in the settings' hash.
        """
        g = self.grid
        return f"{g.scenario}/{data_key(g)}/{self.setting}/seed{self.seed}/{self.label}@{self.settings_hash()}"

    def settings_hash(self) -> str:
        """Short hash of `settings`."""
        return hashlib.sha256(canonical_json(self.settings()).encode()).hexdigest()[:8]

    def settings(self) -> dict[str, Any]:
        """Everything besides the key's names that decides this cell's numbers, defaults resolved.

        A changed default (of a method, a protector, a recipe, its model or a dataset version) changes the key,
        so a store never passes off a result of the old settings as one of the new; so does a changed file of
        a dataset on disk (``data`` is then its layout, source fingerprint and decoding options).
        """
        g = self.grid
        recipe = grid_recipe(g, getattr(g, "model", None))
        parts: dict[str, Any] = {"data": data_identity(g), "model": [recipe.model, dict(recipe.model_config)]}
        if isinstance(g, UnlearnGrid):
            # a plain request keeps the grid's fraction (its keys are those it always had); random@F its own
            parts.update(train=g.train_config().identity(), fraction=request_fraction(self.request or "", g.fraction))
            if self.request == "concept" and g.concepts:  # the phrases decide a concept request on disk
                parts.update(concepts=list(g.concepts))
            if self.label != "original":
                method, config = g.method_config(self.label, self.seed)
                parts.update(method=method, config=resolved(UNLEARNERS.create(method, **config).config))
                if g.tuned_method(self.label) is not None:  # the protocol, not its result: the study decides
                    parts.update(tuning=g.tuning_protocol(method))
            return parts
        victim = victim_settings(g.victim_config(self.victim, self.seed))
        key = g.protector_key(self.label)
        protector = resolved(PROTECTORS.create(key, **g.protector_config(self.label, self.seed)).config)
        return {**parts, "recipe": recipe.train.identity(), "protector": protector, "victim": victim}


def resolved(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of every field but ``progress`` (which changes no number)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "progress"}


LATER_VICTIM_FIELDS = ("regime", "pretrain", "pretrain_epochs", "pretrain_data_seed", "lr")
"""`VictimConfig` fields added after the first scenario-B stores: left out of a cell's settings at their
defaults, so the keys (and stored records) of from-scratch victims stay what they were."""


def victim_settings(victim: VictimConfig) -> dict[str, Any]:
    """A victim's resolved fields for its cell's settings (see `LATER_VICTIM_FIELDS`)."""
    defaults = VictimConfig()
    return {k: v for k, v in resolved(victim).items() if k not in LATER_VICTIM_FIELDS or v != getattr(defaults, k)}


def victim_label(victim: Mapping[str, Any]) -> str:
    """The victim column group, plus ``+<defence>`` when there is one: its image tower from scratch
    (``"cnn"``, ``"resnet"``), ``"finetune"`` (``"finetune<-emoji-captions"`` with a chosen pretraining set,
    ``"finetune<-shapes-captions@data7"`` at a chosen data seed) or ``"hf-clip"``; e.g. ``"cnn+jpeg10"``."""
    regime = str(victim.get("regime", "scratch"))
    if regime == "scratch":
        label = str(victim.get("image_encoder", "cnn"))
    else:
        label = regime if victim.get("pretrain") is None else f"{regime}<-{victim['pretrain']}"
        if victim.get("pretrain_data_seed") is not None:
            label += f"@data{victim['pretrain_data_seed']}"
    defence = victim.get("defence", "none")
    return label if defence == "none" else f"{label}+{defence}"


def grid_cells(grid: Grid) -> list[Cell]:
    """The cells of one grid, in an order that builds each shared model or protection once."""
    if isinstance(grid, ProtectGrid):
        return [
            Cell(grid, seed, protector, victim=victim)
            for seed in grid.seeds
            for protector in grid.all_protectors()
            for victim in grid.victims
        ]
    return [
        Cell(grid, seed, label, request=request)
        for seed in grid.seeds
        for request in grid.requests
        for label in ("original", *grid.rows())
    ]


def bench_cells(config: BenchConfig) -> list[Cell]:
    """Every cell of a bench, duplicates (the same key twice) dropped."""
    cells: dict[str, Cell] = {}
    for grid in config.grids:
        for cell in grid_cells(grid):
            cells.setdefault(cell.key, cell)
    return list(cells.values())


def keep(metrics: list[MetricResult], names: tuple[str, ...]) -> list[MetricResult]:
    """The metrics whose name is in ``names`` (all of them when ``names`` is empty)."""
    return [m for m in metrics if not names or m.name in names]
