"""Synthetic bench records (no training): many methods and seeds, an unknown metric, a protection grid."""

from __future__ import annotations

import random
from pathlib import Path

from mmunlearn.records import ResultStore
from mmunlearn.records.scenarios import VICTIM_METRICS
from mmunlearn.results import MetricResult, RunRecord

# (name, split, higher_is_better) of a scenario-A record, plus a metric no glossary line describes yet
UNLEARN_COLUMNS = [
    ("acc_fused", "retain", True), ("acc_fused", "test", True), ("acc_image", "unlearn", None),
    ("acc_fused", "unlearn", None), ("acc_audio", "unlearn", True), ("acc_audio", "test", True),
    ("mia_svc", "unlearn", None), ("mia_svc_val", "unlearn", None), ("mia_loss_auc", "unlearn", None),
    ("retain_cka_image", "retain", True), ("relearn_acc_image", "unlearn", None), ("zz_new_metric", "test", False),
]  # fmt: skip
METHODS = [
    "ccu", "finetune", "grad_ascent", "neggrad_plus", "random_label", "l1_sparse", "boundary_shrink", "salun",
    "scrub", "multidelete", "ccu -a", "ccu -b", "ccu -c", "ccu -calib", "finetune -long", "salun -0.3",
    "scrub -kl", "grad_ascent -lr", "random_label -x", "l1_sparse -strong",
]  # fmt: skip
PROTECTORS = ["random_noise", "unlearnable", "adversarial_poison"]


def _record(scenario: str, row: str, seed: int, setting: str, metrics: list[MetricResult], seconds: float,
            **extras: object) -> RunRecord:  # fmt: skip
    dataset = "av-digits" if scenario == "unlearn" else "shapes-captions"
    cell = f"{scenario}/{dataset}/small/{setting}/seed{seed}/{row}"
    base = {"cell": cell, "row": row, "dataset": dataset, "size": "small", "setting": setting, "status": "ok"}
    return RunRecord(scenario, row.split(" ")[0], {}, seed, metrics, seconds, {"torch": "2.x"}, {**base, **extras})


def unlearn_records(methods: list[str], seeds: int = 3) -> list[RunRecord]:
    """original, retrain and ``methods`` over ``seeds`` seeds: values near retrain's, spread by method."""
    rng = random.Random(0)
    out = []
    for seed in range(seeds):
        for i, row in enumerate(["original", "retrain", *methods]):
            shift = {"original": 0.15, "retrain": 0.0}.get(row, 0.01 * (i + 1))
            metrics = [MetricResult(n, s, min(1.0, 0.6 + shift * rng.uniform(0.5, 1.5)), hib)
                       for n, s, hib in UNLEARN_COLUMNS]  # fmt: skip
            seconds = {"original": 300.0, "retrain": 250.0}.get(row, 250.0 * 0.02 * (i + 1) * rng.uniform(0.8, 1.2))
            projection = {"x": [0.1, -0.2, 0.3], "y": [0.0, 0.1, -0.1], "label": [0, 1, 2]}
            out.append(_record("unlearn", row, seed, "random", metrics, seconds, projection=projection))
    return out


def protect_records() -> list[RunRecord]:
    """clean and a few protectors, two victims, one seed; chance level on every recall."""
    out = []
    for setting in ("cnn", "cnn+jpeg10"):
        for i, row in enumerate(["clean", *PROTECTORS]):
            metrics = [MetricResult(m, "test", 0.5 - 0.1 * i, True, 0.005) for m in VICTIM_METRICS]
            out.append(_record("protect", row, 0, setting, metrics, 10.0, protect_seconds=0.0 if i == 0 else 2.0 * i))
    return out


def write_store(path: Path, records: list[RunRecord]) -> Path:
    store = ResultStore(path)
    for r in records:
        store.append(r)
    return path
