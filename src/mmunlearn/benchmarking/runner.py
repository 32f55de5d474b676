"""The grid runner behind ``mmunlearn bench``: every cell once, resumable, failures recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import random
import traceback
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ..data import DatasetSplits, load_dataset
from ..records.store import ResultStore, latest_by_cell
from ..results import RunRecord
from ..runtime import progress as show_progress
from ..versions import versions
from .cells import Cell, bench_cells
from .config import BenchConfig
from .protect_cell import ProtectCells
from .unlearn_cell import UnlearnCells

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchOutcome:
    """What a bench call did.

    Attributes:
        ran: cells run now (succeeded or failed).
        skipped: cells already in the store (finished earlier, or failed earlier without ``retry_failed``).
        failed: keys of the cells that failed now.
        store: the results file.
    """

    ran: int
    skipped: int
    failed: tuple[str, ...]
    store: Path


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


def _failed_record(cell: Cell, error: BaseException) -> RunRecord:
    return RunRecord(cell.grid.scenario, cell.label, {}, cell.seed, [], 0.0, versions(), {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(limit=8),
    })  # fmt: skip


def _annotate(record: RunRecord, cell: Cell, command: str | None) -> RunRecord:
    """Add the cell's coordinates, the command and the machine to a record's extras."""
    g = cell.grid
    where = {"cell": cell.key, "row": cell.label, "dataset": g.dataset, "size": g.size, "setting": cell.setting}
    extras = {"status": "ok", **record.extras, **where, "command": command, "machine": machine()}
    return dataclasses.replace(record, extras=extras)


def run_bench(
    config: BenchConfig,
    store: ResultStore,
    work: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> BenchOutcome:
    """Run every cell of ``config`` not yet in ``store``; append one record per cell as it finishes.

    The original model of each (dataset, size, seed) and each protection are computed once, saved
    under ``work`` and shared by every cell that needs them; a killed bench run again skips the
    finished cells and reuses what is on disk. A cell that raises is recorded with its error
    (``extras.status == "failed"``) and the grid goes on.

    Args:
        config: the grids.
        store: the results store (held locked for the duration).
        work: folder for the shared models and protections.
        data_dir: dataset cache root.
        retry_failed: run the cells whose last record is a failure again.
        progress: a progress bar over the cells (with an ETA).
        command: the command line, recorded in every record.

    Returns:
        How many cells ran, were skipped and failed.

    Raises:
        StoreLockedError: another bench holds the store.
    """
    work = Path(work)

    @cache
    def data(name: str, size: str) -> DatasetSplits:
        return load_dataset(name, size, 0, data_dir)

    runners = {"unlearn": UnlearnCells(work, data), "protect": ProtectCells(work, data)}
    with store.locked():
        done = latest_by_cell(store.read())
        cells = bench_cells(config)
        todo = [
            c for c in cells if c.key not in done or (retry_failed and done[c.key].extras.get("status") == "failed")
        ]
        bar = show_progress(todo, unit="cell", enabled=progress)
        with logging_redirect_tqdm([logging.getLogger("mmunlearn")]):
            failed = _run_cells(bar, runners, store, command)
    return BenchOutcome(len(todo), len(cells) - len(todo), tuple(failed), store.path)


def _run_cells(bar: Any, runners: dict[str, Any], store: ResultStore, command: str | None) -> list[str]:
    """Run the cells of ``bar`` in turn, appending each record; returns the keys of the failed cells."""
    failed = []
    for cell in bar:
        bar.set_description(f"{cell.grid.dataset} {cell.setting} seed {cell.seed} {cell.label}")
        seed_everything(cell.key)
        try:
            record = runners[cell.grid.scenario].run(cell)
        except Exception as e:  # a failed cell must not stop the grid; it is recorded with its error
            log.warning("cell %s failed: %s: %s", cell.key, type(e).__name__, e)
            record = _failed_record(cell, e)
            failed.append(cell.key)
        store.append(_annotate(record, cell, command))
    return failed
