"""How one bench cell runs, wherever it runs: seeded by its key, annotated, a failure recorded, not raised.

`runner` runs cells here, one after another; `parallel` runs them on Ray workers. Both use these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import random
import traceback
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DatasetRef, DatasetSplits
from ..results import RunRecord
from ..versions import versions
from .cells import Cell
from .grid_data import data_label, data_provenance
from .protect_cell import ProtectCells
from .unlearn_cell import UnlearnCells

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def seed_everything(key: str) -> None:
    """Seed the global generators from the cell key, so a cell's numbers do not depend on what ran before."""
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def failed_record(cell: Cell, error: BaseException) -> RunRecord:
    return RunRecord(cell.grid.scenario, cell.label, {}, cell.seed, [], 0.0, versions(), {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(limit=8),
    })  # fmt: skip


def annotate(record: RunRecord, cell: Cell, command: str | None) -> RunRecord:
    """Add the cell's coordinates, the command and the machine to a record's extras."""
    g = cell.grid
    title = getattr(g, "title", data_label(g))  # a grid of another model than the dataset's own names it
    size = g.size if g.layout is None else ""  # a dataset on disk has no size: its tables' titles show none
    where = {"cell": cell.key, "row": cell.label, "dataset": title, "size": size, "setting": cell.setting}
    extras = {"status": "ok", **record.extras, **where, "data": data_provenance(g), "command": command,
              "machine": machine()}  # fmt: skip
    return dataclasses.replace(record, extras=extras)


Runners = dict[str, Any]


def make_runners(work: Path, data_dir: str | os.PathLike[str] | None) -> Runners:
    """The cell runner of each scenario, sharing one dataset loader (each dataset loaded once)."""

    @cache
    def data(ref: DatasetRef) -> DatasetSplits:
        return ref.load(data_dir)

    return {"unlearn": UnlearnCells(work, data, data_dir=data_dir), "protect": ProtectCells(work, data)}


def run_cell(runners: Runners, cell: Cell, command: str | None) -> RunRecord:
    """One cell, seeded by its key, annotated; a cell that raises gives its failure record instead."""
    seed_everything(cell.key)
    try:
        record = runners[cell.grid.scenario].run(cell)
    except Exception as e:  # a failed cell must not stop the grid; it is recorded with its error
        log.warning("cell %s failed: %s: %s", cell.key, type(e).__name__, e)
        record = failed_record(cell, e)
    return annotate(record, cell, command)


def shared_key(runners: Runners, cell: Cell) -> str:
    """What ``cell`` shares with other cells (its original model or its protection)."""
    return str(runners[cell.grid.scenario].shared(cell))


def run_here(cells: list[Cell], runners: Runners, command: str | None) -> Iterator[tuple[Cell, RunRecord]]:
    """The cells in turn, in this process: (cell, record) as each finishes."""
    for cell in cells:
        yield cell, run_cell(runners, cell, command)
