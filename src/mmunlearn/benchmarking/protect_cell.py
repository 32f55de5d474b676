"""Scenario B cells: one victim trained on one protection; each protection computed once (cached)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data import DatasetSplits
from ..fileio import canonical_json, sha256_bytes
from ..protectors import PROTECTORS, ProtectedDataset
from ..protectors.protected import dataset_source
from ..results import RunRecord
from ..victim import train_victim
from .cells import Cell, keep, resolved
from .config import ProtectGrid


@dataclass
class ProtectCells:
    """Runs scenario-B cells; each (dataset, size, protector, seed, settings) is protected once, on disk."""

    work: Path
    data: Callable[[str, str], DatasetSplits]  # (dataset, size) -> splits, loaded once per bench
    protections: dict[str, ProtectedDataset] = field(default_factory=dict)

    def protection(self, grid: ProtectGrid, protector: str, seed: int) -> ProtectedDataset:
        """The protection of the grid's training split (computed, saved, or loaded from ``work``)."""
        maker = PROTECTORS.create(protector, **grid.protector_config(protector, seed), progress=False)
        folder = self.work / "protections" / self.shared_key(grid, protector, seed)
        if folder.name not in self.protections:
            if (folder / "manifest.json").is_file():
                protected = ProtectedDataset.load(folder)
            else:
                splits = self.data(grid.dataset, grid.size)
                protected = maker.protect(splits.train)
                protected.source = dataset_source(
                    splits.train, dataset=grid.dataset, size=grid.size, data_seed=0, split="train"
                )
                protected.save(folder)
            self.protections[folder.name] = protected
        return self.protections[folder.name]

    @staticmethod
    def shared_key(grid: ProtectGrid, protector: str, seed: int) -> str:
        """The name of a protection's folder: what the victims of one (protector, seed, settings) share."""
        maker = PROTECTORS.create(protector, **grid.protector_config(protector, seed), progress=False)
        tag = sha256_bytes(canonical_json(resolved(maker.config)).encode())[:8]
        return f"{grid.dataset}-{grid.size}-{protector}-seed{seed}-{tag}"

    def shared(self, cell: Cell) -> str:
        """What ``cell`` shares with other cells (its protection), computed by the first that runs."""
        assert isinstance(cell.grid, ProtectGrid)
        return f"protection:{self.shared_key(cell.grid, cell.label, cell.seed)}"

    def run(self, cell: Cell) -> RunRecord:
        """One victim: trained from scratch (seed + 1) on the protected pairs, scored on clean test pairs."""
        grid = cell.grid
        assert isinstance(grid, ProtectGrid)
        splits = self.data(grid.dataset, grid.size)
        protected = self.protection(grid, cell.label, cell.seed)
        victim = grid.victim_config(cell.victim, cell.seed)
        result = train_victim(splits, protected, victim)
        protector = PROTECTORS.create(cell.label, **grid.protector_config(cell.label, cell.seed)).config
        config = {"protector": resolved(protector), "victim": resolved(victim)}
        extras = {"protect_seconds": float(protected.stats.get("seconds", 0.0))}
        record = result.record()
        return dataclasses.replace(
            record, scenario="protect", config=config, seed=cell.seed, metrics=keep(record.metrics, grid.metrics),
            extras=extras,
        )  # fmt: skip
