"""Scenario A benchmark: every unlearning method x seeds on av-digits, next to retrain.

For each seed: train the original (cached under --work), build the request (a random 10% of the
training samples, visual-only; or the images of chosen identities), run retrain and every method,
and compute the scenario-A metrics. Prints mean +/- std over seeds of every metric, the gap to
retrain, seconds and seconds / retrain's seconds (measured in the same run), the CCU ablation (each
term off in turn), and CCU's seconds at two training-set sizes with the same |U|.

    python benchmarks/scenario_a.py --size full --seeds 0 1 2            # the README table
    python benchmarks/scenario_a.py --size small --seeds 0 --methods ccu retrain   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.benchmarking.requests import request_for
from mmunlearn.checkpoint import load_checkpoint
from mmunlearn.data import DatasetSplits, ForgetRequest, load_dataset
from mmunlearn.models import MultimodalClassifier
from mmunlearn.pipeline import request_metrics, run_request
from mmunlearn.recipes import train_on_dataset
from mmunlearn.records.scenarios import HEADLINE, gap_to_retrain
from mmunlearn.results import MetricResult
from mmunlearn.textfmt import format_table
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

ABLATIONS = {
    "ccu": {},
    "ccu -a": {"use_a": False},
    "ccu -b": {"use_b": False},
    "ccu -c": {"use_c": False},
    "ccu -calib": {"calibrate": False},
}


def original(size: str, seed: int, work: Path) -> MultimodalClassifier:
    """The original model of a seed (trained once, then loaded from the cache)."""
    out = work / f"original-{size}-seed{seed}"
    if not (out / "manifest.json").is_file() or not load_checkpoint(out).manifest.get("metrics"):
        train_on_dataset("av-digits", out, size=size, seed=seed, progress=False)
    model = load_checkpoint(out).model
    assert isinstance(model, MultimodalClassifier)
    return model


def run(
    method: str,
    overrides: dict[str, Any],
    model: MultimodalClassifier,
    req: ForgetRequest,
    splits: DatasetSplits,
    seed: int,
) -> tuple[list[MetricResult], float]:
    """One method on one request: (metrics, seconds)."""
    fields = UnlearnGrid().method_config(method, seed)[1] if method == "retrain" else {"seed": seed}
    unlearner = UNLEARNERS.create(method, **{**fields, "progress": False, **overrides})
    result = run_request(model, splits.train, req, unlearner, validation=splits.val, test=splits.test)
    return result.metrics, result.seconds


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(results: dict[str, list[tuple[list[MetricResult], float]]], retrain_key: str = "retrain") -> str:
    """Rows = methods; columns = every metric, gap to retrain, seconds, seconds / retrain."""
    keys = list(dict.fromkeys((m.name, m.split) for runs in results.values() for ms, _ in runs for m in ms))
    rows = []
    for method, runs in results.items():
        vals: dict[Any, list[float]] = defaultdict(list)
        for i, (ms, secs) in enumerate(runs):
            for m in ms:
                vals[(m.name, m.split)].append(m.value)
            ref_ms, ref_secs = results[retrain_key][i]
            vals["gap"].append(gap_to_retrain(ms, ref_ms))
            vals["seconds"].append(secs)
            vals["ratio"].append(secs / ref_secs)
        rows.append(
            [
                method,
                *(mean_std(vals[k]) for k in keys),
                mean_std(vals["gap"]),
                mean_std(vals["seconds"]),
                mean_std(vals["ratio"]),
            ]
        )
    headers = ["method", *(f"{n}/{s}" for n, s in keys), "gap_to_retrain", "seconds", "sec/retrain"]
    return format_table(headers, rows)


def scaling(model: MultimodalClassifier, splits: DatasetSplits, seed: int) -> str:
    """CCU seconds with the same |U| and the retain set at full and at half size."""
    train = splits.train
    data = UnlearnData.from_request(ForgetRequest.random_fraction(train, 0.05, seed), train, splits.val)
    gold = data.gold_standard
    half = gold.take(torch.randperm(len(gold), generator=torch.Generator().manual_seed(seed))[: len(gold) // 2])
    rows = []
    for label, retain in (("full D", gold), ("half D", half)):
        t0 = time.perf_counter()
        UNLEARNERS.create("ccu", seed=seed, progress=False).unlearn(
            model, dataclasses.replace(data, gold_standard=retain)
        )
        rows.append([label, len(retain), len(data.unlearn), time.perf_counter() - t0])
    rows.append(["ratio full/half", "", "", rows[0][3] / rows[1][3]])
    return format_table(["training set", "|D|", "|U|", "ccu seconds"], rows, digits=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=[m for m in UNLEARNERS.names() if m != "retrain"])
    p.add_argument("--request", default="random", choices=["random", "identity"])
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--work", default="runs/bench-a", help="cache of the original models")
    args = p.parse_args()
    work = Path(args.work)
    splits = load_dataset("av-digits", args.size, 0)
    results: dict[str, list[tuple[list[MetricResult], float]]] = defaultdict(list)
    originals = {}
    variants = {"retrain": ("retrain", {}), **{m: (m, {}) for m in args.methods}}
    if not args.no_ablation:
        variants.update({k: ("ccu", v) for k, v in ABLATIONS.items() if k != "ccu"})
    for seed in args.seeds:
        model = originals[seed] = original(args.size, seed, work)
        req = request_for(args.request, splits, seed)
        data = UnlearnData.from_request(req, splits.train, splits.val)
        results["original"].append((request_metrics(model, model, data, splits.test), 0.0))
        for label, (method, overrides) in variants.items():
            results[label].append(run(method, overrides, model, req, splits, seed))
            print(f"seed {seed}: {label} done in {results[label][-1][1]:.1f} s", flush=True)
    print(
        f"\nav-digits {args.size}, {args.request} request (visual-only), seeds {args.seeds}; headline of the gap: {HEADLINE}\n"
    )
    print(table(dict(results)))
    print("\nCCU cost against the training-set size, same |U|:\n")
    print(scaling(originals[args.seeds[0]], splits, args.seeds[0]))


if __name__ == "__main__":
    main()
