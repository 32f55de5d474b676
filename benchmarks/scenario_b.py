"""Scenario B benchmark: data-side protection against contrastive (CLIP-style) training.

For each dataset: every protector x seeds, a fresh victim (recipe model, seed + 1) trained on the
protected training pairs and evaluated on the clean test pairs (Recall@1/5/10 both ways, mean), then
the transfer table (victim with the ``resnet`` image tower instead of the surrogate's ``cnn``) and the
defence table (each defence, for the clean data and the chosen protectors). Cost: protection seconds,
and their ratio to one clean victim training measured in the same run; the process's peak resident
memory after each protector (``resource.getrusage``; cumulative, so it only grows).

    python benchmarks/scenario_b.py                                  # full size, 3 seeds, both sets
    python benchmarks/scenario_b.py --size small --seeds 1           # a quick run
    python benchmarks/scenario_b.py --datasets shapes-captions --methods clean mem --no-defences
    python benchmarks/scenario_b.py --set mem.outer_iters=4 --out runs/scenario_b.jsonl

Tables print mean ± std over seeds with the chance level in the last row.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from mmunlearn.data import load_dataset
from mmunlearn.data.store import DatasetSplits
from mmunlearn.overrides import parse_value
from mmunlearn.protectors import PROTECTORS, ProtectedDataset
from mmunlearn.protectors.defences import DEFENCES
from mmunlearn.records.scenarios import VICTIM_METRICS
from mmunlearn.textfmt import format_table
from mmunlearn.victim import VictimConfig, VictimResult, train_victim

COLUMNS = list(VICTIM_METRICS)


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mean_std(values: list[float]) -> str:
    """``"m ± s"`` (``"m"`` for a single value)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def recall_table(rows: dict[str, list[VictimResult]], chance: dict[str, float], extra: dict[str, list[str]]) -> str:
    """One row per label (mean ± std over its victims), extra columns, and the chance row."""
    extra_names = ["protect s", "x clean victim", "peak MB"] if extra else []
    body = []
    for label, victims in rows.items():
        cells = [mean_std([v.value(c) for v in victims]) for c in COLUMNS]
        body.append([label, len(victims), *cells, *extra.get(label, [""] * len(extra_names))])
    body.append(["chance", "", *(f"{chance[c]:.3f}" for c in COLUMNS), *([""] * len(extra_names))])
    return format_table(["", "n", *COLUMNS, *extra_names], body)


class Bench:
    """Runs and remembers protections and victims of one dataset."""

    def __init__(self, splits: DatasetSplits, args: argparse.Namespace, overrides: dict[str, dict[str, Any]]) -> None:
        self.splits, self.args, self.overrides = splits, args, overrides
        self.protections: dict[tuple[str, int], ProtectedDataset] = {}
        self.records: list[dict[str, Any]] = []

    def protection(self, method: str, seed: int) -> ProtectedDataset:
        if (method, seed) not in self.protections:
            protector = PROTECTORS.create(method, **{**self.overrides.get(method, {}), "seed": seed, "progress": False})
            self.protections[method, seed] = protector.protect(self.splits.train)
        return self.protections[method, seed]

    def victim(self, method: str, seed: int, encoder: str = "cnn", defence: str = "none") -> VictimResult:
        p = self.protection(method, seed)
        config = VictimConfig(seed=seed + 1, image_encoder=encoder, defence=defence, epochs=self.args.epochs,
                              progress=False)  # fmt: skip
        result = train_victim(self.splits, p, config)
        record = result.record({"dataset": self.splits.name, "size": self.splits.size, "protect_seed": seed})
        self.records.append({**record.to_dict(), "protect_seconds": p.stats["seconds"]})
        print(f"  {method:<13} seed {seed} {encoder:<6} {defence:<12} i2t_r1 {result.value('i2t_r1'):.3f} "
              f"t2i_r1 {result.value('t2i_r1'):.3f}  (protect {p.stats['seconds']:.0f} s, victim {result.seconds:.0f} s)",
              file=sys.stderr, flush=True)  # fmt: skip
        return result


def main_table(bench: Bench, methods: list[str], seeds: list[int]) -> tuple[str, dict[str, float]]:
    rows: dict[str, list[VictimResult]] = {}
    extra: dict[str, list[str]] = {}
    peaks: dict[str, float] = {}
    for method in methods:
        rows[method] = [bench.victim(method, s) for s in seeds]
        peaks[method] = peak_mb()
    clean_seconds = statistics.mean(v.seconds for v in rows["clean"]) if "clean" in rows else float("nan")
    for method in methods:
        secs = [bench.protection(method, s).stats["seconds"] for s in seeds]
        extra[method] = [
            f"{statistics.mean(secs):.1f}",
            f"{statistics.mean(secs) / clean_seconds:.2f}",
            f"{peaks[method]:.0f}",
        ]
    chance = {m.name: m.chance for m in rows[methods[0]][0].metrics}  # type: ignore[misc]
    table = recall_table(rows, chance, extra)
    return table + f"\n\none clean victim training: {clean_seconds:.1f} s (mean over seeds)", chance  # type: ignore[return-value]


def transfer_table(bench: Bench, methods: list[str], seeds: list[int], chance: dict[str, float]) -> str:
    rows = {f"{m} (cnn -> resnet)": [bench.victim(m, s, encoder="resnet") for s in seeds] for m in methods}
    return recall_table(rows, chance, {})


def defence_table(
    bench: Bench, methods: list[str], defences: list[str], seeds: list[int], chance: dict[str, float]
) -> str:
    rows = {f"{m} + {d}": [bench.victim(m, s, defence=d) for s in seeds] for m in methods for d in defences}
    return recall_table(rows, chance, {})


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["mem.outer_iters=4", ...]`` -> ``{"mem": {"outer_iters": 4}}``."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items:
        key, _, value = item.partition("=")
        method, _, field = key.partition(".")
        out[method][field] = parse_value(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--seeds", type=int, default=3, help="protector seeds 0..n-1 (victims use seed + 1)")
    p.add_argument("--datasets", nargs="+", default=["shapes-captions", "emoji-captions"])
    p.add_argument(
        "--methods", nargs="+", default=["clean", "random_noise", "random_trigger", "em", "trigger_only", "mem"]
    )
    p.add_argument("--transfer-methods", nargs="*", default=None, help="default: every method")
    p.add_argument("--defence-methods", nargs="*", default=["clean", "mem"])
    p.add_argument("--defences", nargs="*", default=[d for d in DEFENCES.names() if d != "none"])
    p.add_argument("--no-defences", action="store_true")
    p.add_argument(
        "--table-seeds", type=int, default=None, help="seeds for the transfer/defence tables (default: --seeds)"
    )
    p.add_argument("--epochs", type=int, default=None, help="victim epochs (default: the recipe's)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="protector config override")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="append every victim record to this JSON-lines file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    seeds = list(range(args.seeds))
    table_seeds = list(range(args.table_seeds if args.table_seeds is not None else args.seeds))
    print(f"scenario B, {args.size} size, seeds {seeds}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if overrides:
        print(f"overrides: {json.dumps(overrides)}")
    t0 = time.perf_counter()
    for name in args.datasets:
        splits = load_dataset(name, args.size, 0, args.data_dir, progress=False)
        bench = Bench(splits, args, overrides)
        print(f"\n## {name} ({args.size}: {len(splits.train)} training pairs, {len(splits.test)}-way clean test)\n")
        table, chance = main_table(bench, args.methods, seeds)
        print(table, flush=True)
        print(f"\n### transfer: surrogate cnn, victim resnet ({name})\n")
        print(transfer_table(bench, args.transfer_methods or args.methods, table_seeds, chance), flush=True)
        if not args.no_defences:
            print(f"\n### defences ({name})\n")
            print(defence_table(bench, args.defence_methods, args.defences, table_seeds, chance), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as f:
                for r in bench.records:
                    f.write(json.dumps(r) + "\n")
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s, peak memory {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
