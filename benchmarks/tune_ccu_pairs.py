"""How the dual-encoder defaults of CCU (and CLIPErase's epochs/lr) were chosen: the validation split only.

Scenario C's headline gap to retrain (`HEADLINE_C`: mean recall on U, R and held-out pairs, the SVC
membership attack on U, U's mean true-pair cosine, zero-shot recognition of the forgotten concept and of
the others) is measured with the validation split standing in for the test split everywhere (galleries
of |val| pairs, validation pairs as the non-members and the held-out reference), so no test pair is ever
looked at. The requests are the benchmark's (`request_for`: a random 10%, and the (seed % 10)-th most
frequent concept) on both caption sets, on seeds disjoint from the benchmark's 0-2 by default; each
runs next to its retrained model (cached under --work with the original). Every grid point prints its
gap per request, its mean per dataset and request kind, and its seconds against retrain's.

    python benchmarks/tune_ccu_pairs.py --method ccu                  # CCU's grid
    python benchmarks/tune_ccu_pairs.py --method cliperase            # CLIPErase's epochs x lr
    python benchmarks/tune_ccu_pairs.py --compare                     # every dual-encoder method at its defaults
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from mmunlearn.benchmarking.requests import request_for
from mmunlearn.checkpoint import load_checkpoint, save_checkpoint
from mmunlearn.data import load_dataset
from mmunlearn.metrics.scenario_c import ScenarioCData, membership, pair_similarity, retrieval, zero_shot
from mmunlearn.models.protocols import DualEncoderModel
from mmunlearn.recipes import train_on_dataset
from mmunlearn.records.scenarios import HEADLINE_C, gap_to_retrain
from mmunlearn.results import MetricResult
from mmunlearn.textfmt import format_table
from mmunlearn.unlearn import UNLEARNERS, UnlearnData, retrain_config

GRIDS: dict[str, dict[str, list[Any]]] = {
    "ccu": {"pairs_lr": [1e-4, 3e-4, 1e-3], "epochs": [2, 4], "lambda_a": [1.0, 3.0]},
    "cliperase": {"epochs": [2, 3], "lr": [1e-4, 3e-4, 1e-3]},
    "multidelete": {"epochs": [5], "lr": [5e-4, 2e-3]},
}
DATASETS = ("shapes-captions", "emoji-captions")


def original(dataset: str, size: str, seed: int, work: Path) -> tuple[Any, dict[str, Any]]:
    """The dual encoder of ``seed`` (trained once with the dataset's recipe, then loaded) and its manifest."""
    out = work / f"{dataset}-{size}-seed{seed}"
    if not (out / "manifest.json").is_file() or not load_checkpoint(out).manifest.get("metrics"):
        train_on_dataset(dataset, out, size=size, seed=seed, progress=False)
    ckpt = load_checkpoint(out)
    return ckpt.model.eval(), ckpt.manifest


def val_metrics(model: Any, data: UnlearnData, val: Any) -> list[MetricResult]:
    """Scenario C's headline metrics with the validation split as the held-out split (no test data)."""
    assert data.retain is not None
    d = ScenarioCData(data.unlearn, data.retain, val, None, data.concept)
    return [*retrieval(model, d), *pair_similarity(model, d), *membership(model, d), *zero_shot(model, d)]


def retrained(model: Any, manifest: dict[str, Any], data: UnlearnData, key: str, work: Path) -> tuple[Any, float]:
    """Retrain of one request (cached) and its seconds."""
    out = work / f"retrain-{key.replace(':', '-').replace(' ', '_')}"
    if (out / "manifest.json").is_file():
        ckpt = load_checkpoint(out)
        return ckpt.model.eval(), float(json.loads((out / "seconds.json").read_text()))
    t0 = time.perf_counter()
    new = UNLEARNERS.create("retrain", **retrain_config(manifest["provenance"]["train"]), progress=False)
    ref = new.unlearn(model, data)
    secs = time.perf_counter() - t0
    save_checkpoint(out, ref)
    (out / "seconds.json").write_text(json.dumps(secs))
    return ref.eval(), secs


def headline(metrics: list[MetricResult]) -> dict[str, float]:
    values = {(m.name, m.split): m.value for m in metrics}
    return {f"{n}/{s}": round(values[(n, s)], 3) for n, s in HEADLINE_C if (n, s) in values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="ccu", help="the method whose grid runs (ccu, cliperase, multidelete)")
    p.add_argument("--compare", action="store_true", help="every dual-encoder method at its defaults instead")
    p.add_argument("--methods", nargs="+", default=None, help="with --compare: only these methods")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--size", default="small", choices=["small", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5], help="seeds of the originals, requests, methods")
    p.add_argument("--requests", nargs="+", default=["random", "concept"], choices=["random", "concept"])
    p.add_argument("--set", nargs="*", default=[], help="extra fixed config fields key=value (JSON values)")
    p.add_argument("--grid", default=None, help='a grid instead of the method\'s, as JSON: {"field": [values]}, '
                   'or a list of configs [{"field": value}, ...]')  # fmt: skip
    p.add_argument("--work", default="runs/tune-ccu-pairs", help="cache of the original and retrained models")
    args = p.parse_args()
    torch.set_num_threads(1)  # seconds comparable on a busy machine (2 threads on busy cores are far slower)
    work = Path(args.work)
    fixed = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    cases = []
    for dataset in args.datasets:
        splits = load_dataset(dataset, args.size, 0)
        for seed in args.seeds:
            model, manifest = original(dataset, args.size, seed, work)
            for kind in args.requests:
                req = request_for(kind, splits, seed)
                data = UnlearnData.from_request(req, splits.train, splits.val)
                key = f"{dataset}/{seed}/{kind}"
                ref, ref_secs = retrained(model, manifest, data, f"{dataset}-{args.size}-seed{seed}-{kind}", work)
                ref_m, orig_m = val_metrics(ref, data, splits.val), val_metrics(model, data, splits.val)
                gap = gap_to_retrain(orig_m, ref_m, HEADLINE_C)
                print(f"{key} ({req.concept or 'random 10%'}): |U| = {len(data.unlearn)}, retrain {ref_secs:.1f} s, "
                      f"original's gap {gap:.4f}\n  retrain:  {headline(ref_m)}\n  original: {headline(orig_m)}")  # fmt: skip
                cases.append((key, seed, model, data, splits.val, ref_m, ref_secs, gap))
    if args.compare:
        names = [n for n in UNLEARNERS.names() if n != "retrain" and DualEncoderModel in UNLEARNERS.get(n).requires]
        points = [(n, {}) for n in names if args.methods is None or n in args.methods]
    else:
        grid = json.loads(args.grid) if args.grid else GRIDS[args.method]
        if isinstance(grid, list):
            points = [(args.method, dict(point)) for point in grid]
        else:
            points = [(args.method, dict(zip(grid, v, strict=True))) for v in itertools.product(*grid.values())]
    groups = sorted({_group(c[0]) for c in cases})
    rows = [["(original)", "", *[_mean(c[-1] for c in cases if _group(c[0]) == g) for g in groups],
             _mean(c[-1] for c in cases), 0.0]]  # fmt: skip
    for method, config in points:
        gaps, fracs = {}, []
        for key, seed, model, data, val, ref_m, ref_secs, _ in cases:
            un = UNLEARNERS.create(method, seed=seed, progress=False, **{**fixed, **config})
            t0 = time.perf_counter()
            new = un.unlearn(model, data)
            secs = time.perf_counter() - t0
            m = val_metrics(new, data, val)
            gaps[key] = gap_to_retrain(m, ref_m, HEADLINE_C)
            fracs.append(secs / ref_secs)
            print(f"  {method} {json.dumps(config)} {key}: gap {gaps[key]:.4f}, {secs:.2f} s {headline(m)}", flush=True)
        by_group = [_mean(v for k, v in gaps.items() if _group(k) == g) for g in groups]
        rows.append(
            [method, json.dumps({**fixed, **config}), *by_group, _mean(gaps.values()), statistics.median(fracs)]
        )
    rows.sort(key=lambda r: r[-2])
    print(format_table(["method", "config", *groups, "mean gap", "median s / retrain's"], rows, digits=4))


def _group(key: str) -> str:
    """``dataset/seed/kind`` -> ``dataset/kind``."""
    dataset, _, kind = key.rsplit("/", 2)
    return f"{dataset}/{kind}"


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


if __name__ == "__main__":
    main()
