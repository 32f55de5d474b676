"""Aggregation against a naive reference: means, sample stds, gap to retrain, cost ratios and ranks."""

import math
import random
import statistics

import pytest

from mmunlearn.metrics.scenario_a import HEADLINE
from mmunlearn.records.aggregate import aggregate, competition_ranks
from mmunlearn.results import MetricResult, RunRecord

METRICS = [("acc_fused", "test", True), ("acc_image", "unlearn", None), ("mia_svc", "unlearn", None)]


def rec(row, seed, values, seconds, scenario="unlearn", setting="random", status="ok", **extras):
    metrics = [MetricResult(n, s, v, d) for (n, s, d), v in zip(METRICS, values, strict=True)]
    cell = f"{scenario}/{setting}/seed{seed}/{row}"
    extras = {"cell": cell, "row": row, "dataset": "av-digits", "size": "small", "setting": setting,
              "status": status, **extras}  # fmt: skip
    return RunRecord(scenario, row, {}, seed, metrics, seconds, {}, extras)


@pytest.fixture
def records():
    rng = random.Random(0)
    out = []
    for seed in (0, 1, 2):
        for row in ("original", "retrain", "ccu", "finetune", "grad_ascent"):
            out.append(rec(row, seed, [rng.random() for _ in METRICS], 1 + rng.random() * 10))
    return out


def naive(records, row, i):
    return [r.metrics[i].value for r in records if r.extras["row"] == row]


def test_means_stds_gaps_and_ratios_match_a_naive_reference(records):
    (table,) = aggregate(records)
    assert [r.label for r in table.rows] == ["original", "retrain", "ccu", "finetune", "grad_ascent"]
    by = {r.extras["row"] + str(r.seed): r for r in records}
    for row in table.rows:
        for i, (name, split, _) in enumerate(METRICS):
            vals = naive(records, row.label, i)
            assert row.metrics[(name, split)].mean == pytest.approx(sum(vals) / 3)
            assert row.metrics[(name, split)].std == pytest.approx(statistics.stdev(vals))
        if row.label in ("original", "retrain"):
            continue
        gaps, ratios = [], []
        for s in "012":
            mine, ref = by[row.label + s], by["retrain" + s]
            diffs = [abs(a.value - b.value) for a, b in zip(mine.metrics, ref.metrics, strict=True)
                     if (a.name, a.split) in HEADLINE]  # fmt: skip
            gaps.append(sum(diffs) / len(diffs))
            ratios.append(mine.seconds / ref.seconds)
        assert row.gap.mean == pytest.approx(sum(gaps) / 3)
        assert row.ratio.mean == pytest.approx(sum(ratios) / 3)
    assert table.row("retrain").gap.mean == 0.0


def test_ranks_follow_each_metrics_direction(records):
    (table,) = aggregate(records)
    mean = {r.label: {c: s.mean for c, s in r.metrics.items()} for r in table.rows}
    methods = ["ccu", "finetune", "grad_ascent"]
    best_test = max(methods, key=lambda m: mean[m][("acc_fused", "test")])
    assert table.ranks["acc_fused/test"][best_test] == 1  # higher is better
    ref = mean["retrain"][("acc_image", "unlearn")]
    closest = min(methods, key=lambda m: abs(mean[m][("acc_image", "unlearn")] - ref))
    assert table.ranks["acc_image/unlearn"][closest] == 1  # a forget metric: closest to retrain
    assert set(table.ranks["gap"]) == set(methods)  # the reference and the original are not ranked


def test_competition_ranks_share_ties():
    assert competition_ranks({"a": 0.1, "b": 0.3, "c": 0.1, "d": 0.2}) == {"a": 1, "c": 1, "d": 3, "b": 4}


def test_protect_tables_rank_lower_recall_first_and_ratio_protection_time():
    rows = []
    for seed in (0, 1):
        for row, recall, protect in (("clean", 0.9, 0.0), ("mem", 0.1, 30.0), ("em", 0.5, 20.0)):
            r = rec(row, seed, [recall, recall, recall], 10.0 + seed, scenario="protect", setting="cnn",
                    protect_seconds=protect + seed)  # fmt: skip
            rows.append(r)
    (table,) = aggregate(rows)
    assert table.rows[0].label == "clean"
    assert table.ranks["acc_fused/test"] == {"mem": 1, "em": 2}
    mem = table.row("mem")
    assert mem.ratio.mean == pytest.approx((30 / 10 + 31 / 11) / 2)
    assert mem.protect_seconds.mean == pytest.approx(30.5)
    assert mem.gap is None


def test_newest_record_of_a_cell_wins_and_failures_are_listed(records):
    failed = rec("scrub", 0, [0, 0, 0], 0.0, status="failed", error="RuntimeError: boom")
    retried_ok = rec("grad_ascent", 0, [1.0, 1.0, 1.0], 2.0)
    (table,) = aggregate([*records, failed, retried_ok])
    assert table.failed == [(failed.extras["cell"], "RuntimeError: boom")]
    assert table.row("scrub") is None
    ga = table.row("grad_ascent")
    assert ga.metrics[("acc_fused", "test")].values[0] == 1.0  # seed 0 replaced, not added
    assert ga.metrics[("acc_fused", "test")].n == 3


def test_a_single_seed_has_zero_std_and_missing_ratios_are_none():
    (table,) = aggregate([rec("ccu", 0, [0.5, 0.5, 0.5], 0.0)])
    row = table.row("ccu")
    assert row.metrics[("acc_fused", "test")].std == 0.0
    assert row.gap is None and row.ratio is None
    assert not math.isnan(row.seconds.mean)
