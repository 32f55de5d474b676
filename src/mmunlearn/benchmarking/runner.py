"""The grid runner behind ``mmunlearn bench``: every cell once, resumable, failures recorded."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import ConfigError
from ..records.store import ResultStore, latest_by_cell
from ..runtime import progress as show_progress
from .cells import bench_cells
from .config import BenchConfig
from .execute import make_runners, run_here
from .grid_data import data_label, data_ref
from .parallel import import_ray, run_on_ray

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


def run_bench(
    config: BenchConfig,
    store: ResultStore,
    work: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    command: str | None = None,
    workers: int = 0,
    ray_address: str | None = None,
    threads: int = 1,
    seeds: Collection[int] | None = None,
) -> BenchOutcome:
    """Run every cell of ``config`` not yet in ``store``; append one record per cell as it finishes.

    The original model of each (dataset, size, seed) and each protection are computed once, saved
    under ``work`` and shared by every cell that needs them; a killed bench run again skips the
    finished cells and reuses what is on disk. A cell that raises is recorded with its error
    (``extras.status == "failed"``) and the grid goes on.

    Args:
        config: the grids.
        store: the results store (held locked for the duration; this process is its only writer).
        work: folder for the shared models and protections.
        data_dir: dataset cache root.
        retry_failed: run the cells whose last record is a failure again.
        progress: a progress bar over the cells (with an ETA).
        command: the command line, recorded in every record.
        workers: 0 runs the cells here, one after another; N >= 1 runs them on N Ray workers
            (`mmunlearn.benchmarking.parallel`).
        ray_address: join this Ray cluster instead of starting a local instance (with ``workers``).
        threads: torch threads of each Ray worker (with ``workers``).
        seeds: run only the cells of these seeds (None: every seed); the cells and their keys are those of
            the whole config, so a later run of the other seeds completes the same grids.

    Returns:
        How many cells ran, were skipped and failed.

    Raises:
        StoreLockedError: another bench holds the store.
        ConfigError: ``workers`` without Ray installed, or a bad ``workers``/``threads``.
    """
    work = Path(work)
    if workers < 0 or threads < 1:
        raise ConfigError(f"--workers must be >= 0 and --threads >= 1, got {workers} and {threads}")
    if workers:
        import_ray()  # before any work: without Ray, say how to install it
    with store.locked():
        done = latest_by_cell(store.read())
        cells = [c for c in bench_cells(config) if seeds is None or c.seed in seeds]
        todo = [
            c for c in cells if c.key not in done or (retry_failed and done[c.key].extras.get("status") == "failed")
        ]
        if workers and todo:  # built here once, so that workers only read the cache (run here: built on first use)
            for ref in dict.fromkeys(data_ref(g) for g in config.grids):
                ref.load(data_dir)
        bar = show_progress(total=len(todo), unit="cell", enabled=progress)
        with logging_redirect_tqdm([logging.getLogger("mmunlearn")]):
            if workers:
                records = run_on_ray(todo, work, data_dir, command, workers, threads, ray_address)
            else:
                records = run_here(todo, make_runners(work, data_dir), command)
            failed = []
            for cell, record in records:
                store.append(record)
                bar.set_description(f"{data_label(cell.grid)} {cell.setting} seed {cell.seed} {cell.label}")
                bar.update(1)
                if record.extras.get("status") == "failed":
                    failed.append(cell.key)
        bar.close()
    return BenchOutcome(len(todo), len(cells) - len(todo), tuple(failed), store.path)
