"""``mmunlearn bench`` and ``mmunlearn report``: thin wrappers over `run_bench` and `write_report`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from ..benchmarking.config import BenchConfig, load_config
from ..benchmarking.grid_data import data_ref
from ..benchmarking.runner import run_bench
from ..data.store import default_data_dir
from ..errors import ConfigError
from ..outputs import check_cache, check_file, check_folder
from ..records.aggregate import Table, aggregate
from ..records.store import ResultStore, read_records
from ..reporting import write_report
from ..runtime import configure_threads
from ..textfmt import format_table


def command_line(args: argparse.Namespace) -> str:
    """The command as the user typed it (for the records and the report)."""
    return shlex.join(["mmunlearn", *getattr(args, "argv", sys.argv[1:])])


def select_grids(config: BenchConfig, indices: list[int] | None) -> BenchConfig:
    """The config with only the chosen grids (by position, from 0), or all of them.

    Raises:
        ConfigError: an index out of range.
    """
    if not indices:
        return config
    bad = [i for i in indices if not 0 <= i < len(config.grids)]
    if bad:
        raise ConfigError(
            f"--grid {bad} out of range: {config.source or config.name} has grids 0..{len(config.grids) - 1}"
        )
    return dataclasses.replace(config, grids=tuple(config.grids[i] for i in indices))


def check_seeds(config: BenchConfig, seeds: list[int] | None) -> list[int] | None:
    """``--seed`` values, each a seed of some grid of ``config`` (None: every seed).

    Raises:
        ConfigError: a seed no grid has.
    """
    known = sorted({s for g in config.grids for s in g.seeds})
    bad = sorted(set(seeds or ()) - set(known))
    if bad:
        raise ConfigError(f"--seed {bad}: no grid of {config.source or config.name} has it; its seeds are {known}")
    return seeds


def cmd_bench(args: argparse.Namespace) -> int:
    config = select_grids(load_config(args.config), args.grid)
    root = check_folder(args.work or Path("runs/bench") / config.name, "--work")
    store = ResultStore(check_file(args.store or root / "results.jsonl", "--store"))
    check_cache(default_data_dir(args.data_dir), [data_ref(g).cache_root(args.data_dir) for g in config.grids])
    if args.threads is not None:
        configure_threads(args.threads)
    outcome = run_bench(
        config, store, root, data_dir=args.data_dir, retry_failed=args.retry_failed, progress=not args.quiet,
        command=command_line(args), workers=args.workers, ray_address=args.ray_address, threads=args.threads or 1,
        seeds=check_seeds(config, args.seed),
    )  # fmt: skip
    summary = {
        "store": str(outcome.store),
        "ran": outcome.ran,
        "skipped": outcome.skipped,
        "failed": list(outcome.failed),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{outcome.ran} cells run, {outcome.skipped} already in {outcome.store}, {len(outcome.failed)} failed")
        for key in outcome.failed:
            print(f"  failed: {key} (its error is in the store; --retry-failed runs it again)")
        for table in aggregate(read_records(outcome.store)):
            print(f"\n{table.title}\n")
            print(quick_table(table))
    return 1 if outcome.failed else 0


def quick_table(table: Table) -> str:
    """Headline figures of a table for the terminal: means only (the report has the rest)."""
    cols = table.columns[:6]
    rows = []
    for r in table.rows:
        cells = [r.metrics[c].mean if c in r.metrics else None for c in cols]
        rows.append([r.label, len(r.seeds), *cells, r.gap.mean if r.gap else None, r.seconds.mean])
    return format_table(["row", "n", *(f"{n}/{s}" for n, s in cols), "gap", "seconds"], rows)


def cmd_report(args: argparse.Namespace) -> int:
    files = write_report(
        args.results, args.out, command=command_line(args), readme=args.readme, readme_block=args.readme_block
    )
    if args.json:
        print(json.dumps({k: str(v) for k, v in files.items()}))
    else:
        for kind, path in files.items():
            print(f"{kind:<9} {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` and ``report`` on the top-level parser."""
    p = sub.add_parser("bench", help="run a grid of methods x datasets x seeds into a JSON-lines results store")
    p.add_argument("config", help="bench YAML (see benchmarks/configs/)")
    p.add_argument("--store", default=None, help="results file (default: runs/bench/<name>/results.jsonl)")
    p.add_argument("--work", default=None, help="folder for shared models and protections (default: runs/bench/<name>)")
    p.add_argument("--grid", type=int, action="append", help="run only this grid of the config (from 0; repeatable)")
    p.add_argument(
        "--seed", type=int, action="append", help="run only the cells of this seed (repeatable; e.g. seed 0 first)"
    )
    p.add_argument("--retry-failed", action="store_true", help="run the cells that failed before again")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (of each worker with --workers; default: torch's choice, 1 per worker)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the cells on N Ray workers (a local Ray instance started for the run; needs the 'scale' extra); "
        "default: one after another in this process",
    )
    p.add_argument("--ray-address", default=None, help="with --workers: join this Ray cluster (e.g. ray://head:10001)")
    p.add_argument("--data-dir", default=None, help="dataset cache root (default: $MMUNLEARN_DATA or the user cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or info logs")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the tables")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="Markdown, CSV, PNG plots and one offline HTML page from a results store")
    p.add_argument("results", nargs="+", help="results store(s) written by mmunlearn bench (records are pooled)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--readme", default=None, help="also rewrite the bench section of this Markdown file")
    p.add_argument(
        "--readme-block",
        default="",
        metavar="NAME",
        help="rewrite the block between '<!-- mmunlearn-report:begin NAME -->' and '<!-- mmunlearn-report:end "
        "NAME -->' (default: the unnamed block)",
    )
    p.add_argument("--quiet", action="store_true", help="no info logs")
    p.add_argument("--json", action="store_true", help="print the written files as JSON")
    p.set_defaults(func=cmd_report)
