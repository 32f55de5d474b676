"""Scenario B cells: one victim trained on one protection; each protection, and each pretrained model of a
``finetune`` victim, computed once (cached on disk)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import victim_models
from ..checkpoint import load_checkpoint
from ..data import DatasetRef, DatasetSplits
from ..fileio import atomic_write_json, canonical_json, sha256_bytes
from ..models import DualEncoder
from ..protectors import PROTECTORS, ProtectedDataset
from ..protectors.protected import dataset_source
from ..recipes import recipe_for
from ..results import RunRecord
from ..victim import VictimConfig, train_victim
from .cells import Cell, keep, resolved
from .config import ProtectGrid
from .grid_data import data_identity, data_ref, data_slug
from .requests import exclusive


@dataclass
class ProtectCells:
    """Runs scenario-B cells; each (dataset, size, protector, seed, settings) is protected once, on disk."""

    work: Path
    data: Callable[[DatasetRef], DatasetSplits]  # the grid's data -> its splits, loaded once per bench
    protections: dict[str, ProtectedDataset] = field(default_factory=dict)
    pretrained_models: dict[str, tuple[DualEncoder, float]] = field(default_factory=dict)

    def protection(self, grid: ProtectGrid, label: str, seed: int) -> ProtectedDataset:
        """The protection of a row (protector or variant) of the grid's training split (computed, saved, or
        loaded from ``work``)."""
        maker = PROTECTORS.create(grid.protector_key(label), **grid.protector_config(label, seed), progress=False)
        folder = self.work / "protections" / self.shared_key(grid, label, seed)
        if folder.name not in self.protections:
            if (folder / "manifest.json").is_file():
                protected = ProtectedDataset.load(folder)
            else:
                ref = data_ref(grid)
                splits = self.data(ref)
                protected = maker.protect(splits.train)
                protected.source = dataset_source(splits.train, **ref.provenance(), split="train")
                protected.save(folder)
            self.protections[folder.name] = protected
        return self.protections[folder.name]

    @staticmethod
    def shared_key(grid: ProtectGrid, label: str, seed: int) -> str:
        """The name of a protection's folder: what the victims of one (protector, seed, settings) share (a
        variant with its protector's settings shares its protector's folder); on disk the data's fingerprint
        is in the tag too, so changed files are protected again."""
        key = grid.protector_key(label)
        maker = PROTECTORS.create(key, **grid.protector_config(label, seed), progress=False)
        config = resolved(maker.config)
        identity = config if grid.layout is None else [config, data_identity(grid)]
        tag = sha256_bytes(canonical_json(identity).encode())[:8]
        return f"{data_slug(grid)}-{key}-seed{seed}-{tag}"

    def pretrained(self, grid: ProtectGrid, victim: VictimConfig) -> tuple[DualEncoder, float]:
        """A ``finetune`` victim's pretrained model and its training seconds: trained once per (pretraining set,
        size, seed, settings) and saved under ``work``; the cells of every protector load it (a lock makes a
        second worker wait for the first's)."""
        source, data_seed = victim.pretraining_data(grid.dataset, data_ref(grid).seed)
        folder = self.work / "pretrained" / self.pretrain_key(grid, victim)
        if folder.name not in self.pretrained_models:
            timing = folder / "bench-timing.json"
            with exclusive(self.work / "locks" / f"{folder.name}.lock"):
                if not timing.is_file():
                    assert victim.seed is not None  # a grid's victim always has its seed
                    result = victim_models.pretrain_model(
                        self.data(DatasetRef(source, grid.size, data_seed)), victim.seed, victim.image_encoder,
                        victim.pretrain_epochs,
                        out_dir=folder,
                    )  # fmt: skip
                    atomic_write_json(timing, {"seconds": result.total_seconds})
            model = load_checkpoint(folder).model  # always from disk: a resumed bench sees the same weights
            if not isinstance(model, DualEncoder):
                raise TypeError(f"{folder} does not hold a dual-encoder")
            self.pretrained_models[folder.name] = (model, float(json.loads(timing.read_text())["seconds"]))
        return self.pretrained_models[folder.name]

    @staticmethod
    def pretrain_key(grid: ProtectGrid, victim: VictimConfig) -> str:
        """The name of a pretrained model's folder: what the ``finetune`` victims of one seed share."""
        source, data_seed = victim.pretraining_data(grid.dataset, data_ref(grid).seed)
        recipe = recipe_for(source)
        identity = [recipe.train.identity(), recipe.model, dict(recipe.model_config), victim.image_encoder,
                    victim.pretrain_epochs]  # fmt: skip
        tag = sha256_bytes(canonical_json(identity).encode())[:8]
        data = "" if data_seed == 0 else f"-data{data_seed}"  # data seed 0: the folder names from before the option
        return f"{source}{data}-{grid.size}-seed{victim.seed}-{tag}"

    def shared(self, cell: Cell) -> str:
        """What ``cell`` shares with other cells (its protection), computed by the first that runs."""
        assert isinstance(cell.grid, ProtectGrid)
        return f"protection:{self.shared_key(cell.grid, cell.label, cell.seed)}"

    def run(self, cell: Cell) -> RunRecord:
        """One victim (seed + 1) in its regime, trained on the protected pairs, scored on clean test pairs."""
        grid = cell.grid
        assert isinstance(grid, ProtectGrid)
        splits = self.data(data_ref(grid))
        protected = self.protection(grid, cell.label, cell.seed)
        victim = grid.victim_config(cell.victim, cell.seed)
        model, pretrain_seconds = self.pretrained(grid, victim) if victim.regime == "finetune" else (None, 0.0)
        result = train_victim(splits, protected, victim, pretrained=model)
        key = grid.protector_key(cell.label)
        protector = PROTECTORS.create(key, **grid.protector_config(cell.label, cell.seed)).config
        config = {"protector": resolved(protector), "victim": {**resolved(victim), "pretrain": result.pretrain}}
        extras = {"protect_seconds": float(protected.stats.get("seconds", 0.0))}
        if result.pretrain is not None:  # shared by the cells of every protector: not part of this cell's seconds
            extras["pretrain_seconds"] = pretrain_seconds
        record = result.record()
        return dataclasses.replace(
            record, scenario="protect", config=config, seed=cell.seed, metrics=keep(record.metrics, grid.metrics),
            extras=extras,
        )  # fmt: skip
