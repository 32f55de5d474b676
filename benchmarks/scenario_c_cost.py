"""Scenario C cost: what each method costs next to retrain, and how the best one's time grows.

On one seed of an image-caption dataset: trains the dual encoder (cached under --work), forgets a random
10% of the pairs with retrain and every method, and prints each method's seconds and seconds / retrain's
seconds measured in the same run, with its gap to retrain. Then the chosen method's seconds when |U|
doubles twice (1x, 2x, 4x at the same training set) and when the training set shrinks at fixed |U|
(the retained pairs cut to a quarter and a half).

    python benchmarks/scenario_c_cost.py --dataset shapes-captions --size full
    python benchmarks/scenario_c_cost.py --dataset emoji-captions --size small --methods ccu cliperase
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.checkpoint import load_checkpoint
from mmunlearn.data import ForgetRequest, load_dataset
from mmunlearn.models.protocols import DualEncoderModel
from mmunlearn.pipeline import run_request
from mmunlearn.recipes import train_on_dataset
from mmunlearn.records.scenarios import gap_to_retrain
from mmunlearn.textfmt import format_table
from mmunlearn.unlearn import UNLEARNERS, UnlearnData


def original(dataset: str, size: str, seed: int, work: Path) -> Any:
    """The trained dual encoder of a seed (trained once, then loaded from the cache)."""
    out = work / f"{dataset}-{size}-seed{seed}"
    if not (out / "manifest.json").is_file() or not load_checkpoint(out).manifest.get("metrics"):
        train_on_dataset(dataset, out, size=size, seed=seed, progress=False)
    return load_checkpoint(out).model


def unlearner(dataset: str, method: str, seed: int) -> Any:
    """A method with its defaults (retrain with the dataset's recipe)."""
    fields = UnlearnGrid(dataset, methods=(method,)).method_config(method, seed)[1]
    return UNLEARNERS.create(method, **fields, progress=False)


def methods_table(dataset: str, model: Any, splits: Any, methods: list[str], seed: int) -> str:
    """Every method on a random 10% of the pairs: seconds, seconds / retrain's, gap to retrain."""
    req = ForgetRequest.random_fraction(splits.train, 0.1, seed, splits.train.modalities)
    runs = {}
    for m in ["retrain", *methods]:
        runs[m] = run_request(
            model, splits.train, req, unlearner(dataset, m, seed), validation=splits.val, test=splits.test
        )
        print(f"{m}: {runs[m].seconds:.1f} s", flush=True)
    ref = runs["retrain"]
    rows = [[m, r.seconds, r.seconds / ref.seconds, gap_to_retrain(r.metrics, ref.metrics)] for m, r in runs.items()]
    return format_table(["method", "seconds", "seconds / retrain's", "gap to retrain"], rows, digits=3)


def timed(method: Any, model: Any, data: UnlearnData) -> float:
    t0 = time.perf_counter()
    method.unlearn(model, data)
    return time.perf_counter() - t0


def growth(dataset: str, model: Any, splits: Any, method: str, seed: int) -> str:
    """The method's seconds at |U| x1, x2, x4 (same training set), then at fixed |U| with a quarter, a
    half and all of the retained pairs."""
    train, rows = splits.train, []
    base = None
    for k in (1, 2, 4):
        req = ForgetRequest.random_fraction(train, 0.025 * k, seed, train.modalities)
        data = UnlearnData.from_request(req, train, splits.val)
        secs = timed(unlearner(dataset, method, seed), model, data)
        base = base or secs
        rows.append([f"|U| x{k}", len(data.unlearn), len(data.gold_standard), secs, secs / base])
    req = ForgetRequest.random_fraction(train, 0.025, seed, train.modalities)
    data = UnlearnData.from_request(req, train, splits.val)
    order = torch.randperm(len(data.gold_standard), generator=torch.Generator().manual_seed(seed))
    base = None
    for share in (0.25, 0.5, 1.0):
        kept = data.gold_standard.take(order[: round(share * len(order))])
        secs = timed(
            unlearner(dataset, method, seed), model, dataclasses.replace(data, gold_standard=kept, retain=kept)
        )
        base = base or secs
        rows.append([f"|R| x{share:g}", len(data.unlearn), len(kept), secs, secs / base])
    return format_table(["setting", "|U|", "|R|", f"{method} seconds", "ratio to the first"], rows, digits=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="shapes-captions", choices=["shapes-captions", "emoji-captions"])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=None, help="default: every dual-encoder method")
    p.add_argument("--best", default="ccu", help="the method whose growth is measured")
    p.add_argument("--work", default="runs/bench-c", help="cache of the original models")
    args = p.parse_args()
    dual = [m for m in UNLEARNERS.names() if m != "retrain" and DualEncoderModel in UNLEARNERS.get(m).requires]
    splits = load_dataset(args.dataset, args.size, 0)
    model = original(args.dataset, args.size, args.seed, Path(args.work))
    print(f"\n{args.dataset} {args.size}, seed {args.seed}, a random 10% of the pairs forgotten\n")
    print(methods_table(args.dataset, model, splits, args.methods or dual, args.seed))
    print(f"\n{args.best} seconds as |U| and |R| grow\n")
    print(growth(args.dataset, model, splits, args.best, args.seed))


if __name__ == "__main__":
    main()
