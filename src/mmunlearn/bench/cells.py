"""The cells of a bench: one per (scenario, dataset, size, request or victim, seed, row)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..fileio import canonical_json
from ..results import MetricResult
from .config import BenchConfig, Grid, ProtectGrid, UnlearnGrid


@dataclass(frozen=True)
class Cell:
    """One unit of work, one `RunRecord`.

    Attributes:
        grid: the grid it belongs to.
        seed: the seed of everything in the cell.
        label: the row: ``"original"``, ``"retrain"``, a method or variant label, or a protector.
        request: scenario A's request kind (``"random"``, ``"identity"``).
        victim: scenario B's victim fields (``image_encoder``, ``defence``).
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
        """A stable identifier (the store's resume key), including a hash of the row's settings."""
        g = self.grid
        return f"{g.scenario}/{g.dataset}/{g.size}/{self.setting}/seed{self.seed}/{self.label}@{self.settings_hash()}"

    def settings_hash(self) -> str:
        """Short hash of everything that changes this cell's numbers besides its key's names."""
        g = self.grid
        if isinstance(g, UnlearnGrid):
            parts: dict[str, Any] = {"train": dict(g.train), "fraction": g.fraction}
            if self.label != "original":
                method, fields = g.rows()[self.label]
                parts.update(method=method, fields=fields)
        else:
            parts = {"protector": dict(g.overrides.get(self.label, {})), "epochs": g.victim_epochs}
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:8]


def victim_label(victim: Mapping[str, Any]) -> str:
    """``"cnn"``, ``"resnet"``, ``"cnn+jpeg10"``: the image tower, plus the defence when there is one."""
    label = str(victim.get("image_encoder", "cnn"))
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
