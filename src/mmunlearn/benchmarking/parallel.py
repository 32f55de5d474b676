"""Bench cells on Ray: ``mmunlearn bench CONFIG --workers N [--ray-address ADDR]``.

Each of the N workers is a Ray actor holding its own scenario runners (an original model or a protection it
loaded stays in its memory for its next cells) and its own torch thread count, so that N workers at one thread
each do not oversubscribe N cores. The bench process is the only writer of the results store: it appends each
record as its cell comes back, so a killed run resumes exactly as a serial one does (finished cells are in
the store, shared models and protections on disk under ``work``).

Shared work is computed once: the cells that share an original model or a protection (`execute.shared_key`)
wait until the first of them has finished, which computed it and saved it under ``work``; then they may run
on any worker, which loads it from disk. If that first cell failed, the next one is released alone (it
computes the shared work again), never several at once, so two workers never write the same folder.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..results import RunRecord
from ..runtime import configure_threads
from .cells import Cell
from .execute import Runners, annotate, failed_record, make_runners, run_cell, shared_key

log = logging.getLogger(__name__)

RAY_MISSING = "--workers runs the cells on Ray, which is not installed: pip install 'mmunlearn[scale]' (or ray)"
OBJECT_STORE_BYTES = 256 * 2**20
"""Ray's shared-memory object store of a local instance: only cells and records pass through it."""


def import_ray() -> Any:
    """The ``ray`` module, or a `ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(RAY_MISSING) from e
    return ray


class CellWorker:
    """One worker (a Ray actor): the scenario runners and a torch thread count of its own."""

    def __init__(self, work: str, data_dir: str | None, threads: int) -> None:
        configure_threads(threads)
        self.runners: Runners = make_runners(Path(work), data_dir)

    def run(self, cell: Cell, command: str | None) -> RunRecord:
        """One cell's annotated record (a failure is a record, not an exception)."""
        return run_cell(self.runners, cell, command)


def release_order(keys: list[str]) -> tuple[deque[int], dict[str, deque[int]]]:
    """The cells that may start at once (the first of each shared key, in cell order) and, per key, the
    cells that wait for it."""
    ready: deque[int] = deque()
    waiting: dict[str, deque[int]] = {}
    for i, key in enumerate(keys):
        if key in waiting:
            waiting[key].append(i)
        else:
            waiting[key] = deque()
            ready.append(i)
    return ready, waiting


def run_on_ray(
    cells: list[Cell],
    work: Path,
    data_dir: str | os.PathLike[str] | None,
    command: str | None,
    workers: int,
    threads: int = 1,
    address: str | None = None,
) -> Iterator[tuple[Cell, RunRecord]]:
    """Run ``cells`` on ``workers`` Ray actors; yield (cell, record) as each finishes (in finishing order).

    Args:
        cells: the cells to run.
        work: folder of the shared models and protections (on a cluster: a path every node sees).
        data_dir: dataset cache root (built before, by the caller: workers only read it).
        command: the command line, recorded in every record.
        workers: number of actors (each asks Ray for ``threads`` CPUs).
        threads: torch threads of each actor.
        address: a running Ray cluster to join (None: a local instance started for this run, and stopped).

    Raises:
        ConfigError: Ray is not installed, or ``workers``/``threads`` < 1.
    """
    if workers < 1 or threads < 1:
        raise ConfigError(f"--workers and --threads must be >= 1, got {workers} and {threads}")
    ray = import_ray()
    if not cells:
        return
    keys = [shared_key(make_runners(work, data_dir), c) for c in cells]  # names only: nothing is loaded
    local = {"num_cpus": workers * threads, "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False}
    ray.init(address=address, **({} if address else local), log_to_driver=False, logging_level=logging.WARNING)
    try:
        actor = ray.remote(num_cpus=threads)(CellWorker)
        root = None if data_dir is None else str(data_dir)
        spawn = lambda: actor.remote(str(work), root, threads)  # noqa: E731
        yield from _dispatch(ray, [spawn() for _ in range(workers)], spawn, cells, keys, command)
    finally:
        ray.shutdown()


def _dispatch(
    ray: Any, pool: list[Any], spawn: Any, cells: list[Cell], keys: list[str], command: str | None
) -> Iterator[tuple[Cell, RunRecord]]:
    """Keep every free actor busy with a released cell; release a key's waiting cells when its first ends."""
    ready, waiting = release_order(keys)
    running: dict[Any, tuple[Any, int]] = {}
    while ready or running:
        while pool and ready:
            i = ready.popleft()
            a = pool.pop()
            running[a.run.remote(cells[i], command)] = (a, i)
        (ref,), _ = ray.wait(list(running), num_returns=1)
        a, i = running.pop(ref)
        try:
            record = ray.get(ref)
            pool.append(a)
        except ray.exceptions.RayError as e:  # the worker died (killed, out of memory): a new one takes its place
            log.warning("cell %s: its worker died: %s", cells[i].key, e)
            record = annotate(failed_record(cells[i], e), cells[i], command)
            pool.append(spawn())
        rest = waiting.get(keys[i], deque())
        if record.extras.get("status") == "failed":
            ready.extend([rest.popleft()] if rest else [])  # computes the shared work again, alone
        else:
            ready.extend(rest)
            rest.clear()
        yield cells[i], record
