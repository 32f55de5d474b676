"""subspace_edit's cost next to retrain's, measured in the same run: the default (every gold-standard sample
estimates A_R) and subsampled retain sets (``retain_samples``).

For each dataset and seed: loads the original from the bench's cache (``--cache``, the stages bench's
models folder) or trains it with the dataset's recipe (under ``--work``), forgets the bench's random
request (10% of the training set: their images on av-digits, whole pairs on the caption sets) with retrain
and each subspace_edit variant, and prints seconds, seconds / retrain's seconds and the gap to retrain
(the headline metrics' mean absolute difference, `gap_to_retrain`). A variant's seconds are the median of
``--repeats`` runs of its unlearning (the first one is `run_request`'s, whose metrics give the gap),
because on a shared machine one run of a second can be slowed several-fold by other jobs; retrain runs
once (its tens of seconds average the load out).

    python benchmarks/subspace_edit_cost.py --threads 1
    python benchmarks/subspace_edit_cost.py --datasets av-digits --seeds 0 --retain-samples 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.benchmarking.requests import request_for
from mmunlearn.checkpoint import load_checkpoint
from mmunlearn.data import load_dataset
from mmunlearn.pipeline import run_request
from mmunlearn.recipes import train_on_dataset
from mmunlearn.records.scenarios import gap_to_retrain
from mmunlearn.textfmt import format_table
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

KINDS = {"av-digits": "multimodal-classifier", "shapes-captions": "dual-encoder", "emoji-captions": "dual-encoder"}


def cached_original(cache: Path, dataset: str, size: str, seed: int) -> Path | None:
    """A finished original of (dataset, size, seed) and the dataset's model kind in the bench's cache."""
    for folder in sorted(cache.glob(f"{dataset}-{size}-seed{seed}-*")):
        manifest = folder / "manifest.json"
        if not folder.is_dir() or not manifest.is_file():
            continue
        meta = json.loads(manifest.read_text())
        if (
            meta.get("model") == KINDS[dataset]
            and meta.get("metrics")
            and meta.get("provenance", {}).get("seed", seed) == seed
        ):
            return folder
    return None


def original(dataset: str, size: str, seed: int, cache: Path, work: Path) -> Any:
    """The original model: the bench's cached one when there is one, else trained with the recipe."""
    folder = cached_original(cache, dataset, size, seed)
    if folder is None:
        folder = work / f"{dataset}-{size}-seed{seed}"
        if not (folder / "manifest.json").is_file() or not load_checkpoint(folder).manifest.get("metrics"):
            train_on_dataset(dataset, folder, size=size, seed=seed, progress=False)
    return load_checkpoint(folder).model


def variants(retain_samples: list[int]) -> dict[str, dict[str, Any]]:
    """The subspace_edit settings compared (name -> config overrides)."""
    subsets = {f"subspace_edit (retain_samples={n})": {"retain_samples": n} for n in retain_samples}
    return {"subspace_edit (default)": {}, **subsets}


def median_seconds(first: float, method: Any, model: Any, data: UnlearnData, repeats: int) -> float:
    """The median of ``first`` and ``repeats - 1`` more timed runs of ``method`` on ``data``."""
    times = [first]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        method.unlearn(model, data, original=model)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def one_seed(dataset: str, size: str, seed: int, args: argparse.Namespace) -> list[list[Any]]:
    """Rows (dataset, seed, method, seconds, ratio, gap) of retrain and every variant on one request."""
    splits = load_dataset(dataset, size, 0)
    model = original(dataset, size, seed, Path(args.cache), Path(args.work))
    req = request_for("random", splits, seed)  # the bench's: visual-only on av-digits, whole pairs on captions
    grid = UnlearnGrid(dataset, methods=("retrain", "subspace_edit"))
    runs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, over in {"retrain": {}, **variants(args.retain_samples)}.items():
        kind = "retrain" if name == "retrain" else "subspace_edit"
        method = UNLEARNERS.create(kind, **{**grid.method_config(kind, seed)[1], **over, "progress": False})
        runs[name] = run_request(model, splits.train, req, method, validation=splits.val, test=splits.test)
        repeats = 1 if kind == "retrain" else args.repeats
        seconds[name] = median_seconds(runs[name].seconds, method, model, runs[name].data, repeats)
        print(f"{dataset} seed {seed} {name}: {seconds[name]:.3f} s", flush=True)
    ref = runs["retrain"]
    return [
        [dataset, seed, name, seconds[name], seconds[name] / seconds["retrain"], gap_to_retrain(r.metrics, ref.metrics)]
        for name, r in runs.items()
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["av-digits", "shapes-captions"], choices=sorted(KINDS))
    p.add_argument("--size", default="small", choices=["small", "full"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--retain-samples", nargs="+", type=int, default=[256, 128], help="the subsampled variants")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each subspace_edit variant (median)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: comparable on a shared machine)")
    p.add_argument("--cache", default="runs/bench/stages/models", help="the bench's cached originals")
    p.add_argument("--work", default="runs/subspace-edit-cost", help="where missing originals are trained")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for d in args.datasets for s in args.seeds for row in one_seed(d, args.size, s, args)]
    print()
    print(
        format_table(["dataset", "seed", "method", "seconds", "seconds / retrain's", "gap to retrain"], rows, digits=4)
    )


if __name__ == "__main__":
    main()
