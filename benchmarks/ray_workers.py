"""Wall time of one bench grid run in this process, on 1 Ray worker and on 2 Ray workers (one torch thread each).

Each run starts from an empty store and work folder (the dataset cache is built once, before the first
run), so every run trains its originals and computes its protections itself. The figures are ratios measured
in one run of this script (the machine is noisy); the goal of the scale-out issue is workers-2 / workers-1 <= 0.6
on a 2-core machine, i.e. little overhead over the two cores.

    python benchmarks/ray_workers.py [benchmarks/configs/quick.yaml] [--grid N ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mmunlearn.benchmarking import ResultStore, load_config, run_bench
from mmunlearn.cli.bench import select_grids
from mmunlearn.data import load_dataset
from mmunlearn.runtime import configure_threads


def timed_run(config, data_dir: Path, root: Path, workers: int) -> tuple[float, int]:
    """(seconds, cells) of one bench run into a fresh store under ``root``."""
    store = ResultStore(root / f"workers{workers}" / "results.jsonl")
    t0 = time.perf_counter()
    outcome = run_bench(
        config, store, root / f"workers{workers}", data_dir=data_dir, progress=False, workers=workers, threads=1
    )
    if outcome.failed:
        raise SystemExit(f"cells failed with --workers {workers}: {outcome.failed}")
    return time.perf_counter() - t0, outcome.ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="benchmarks/configs/quick.yaml")
    parser.add_argument("--grid", type=int, action="append", help="only this grid of the config (repeatable)")
    args = parser.parse_args()
    config = select_grids(load_config(args.config), args.grid)
    configure_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        for g in config.grids:
            load_dataset(g.dataset, g.size, 0, data_dir)
        rows = {w: timed_run(config, data_dir, Path(tmp), w) for w in (0, 1, 2)}
    print(f"{args.config} ({rows[0][1]} cells), one torch thread per worker:")
    for w, (seconds, _) in rows.items():
        where = "in this process" if w == 0 else f"{w} Ray worker{'s' * (w > 1)}"
        print(f"  {where:<16} {seconds:8.1f} s   ratio to 1 worker {seconds / rows[1][0]:.2f}")


if __name__ == "__main__":
    main()
