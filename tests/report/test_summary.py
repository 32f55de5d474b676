"""`mmunlearn.records.summary`: compared rows in order, and the per-seed values behind every mean."""

import dataclasses

import pytest
from synthetic_store import protect_records, unlearn_records

from mmunlearn.records import aggregate, gap_to_retrain
from mmunlearn.records.summary import SEED_FIELDS, by_gap, by_metric, mean_of, per_seed_values, values_of


def test_every_metric_of_every_record_is_a_per_seed_value():
    records = unlearn_records(["ccu", "finetune"], seeds=2) + protect_records()
    values = per_seed_values(records)
    assert SEED_FIELDS == ("scenario", "dataset", "size", "request", "method", "seed", "metric", "split", "value")
    found = {(v.request, v.method, v.seed, v.metric, v.split): v.value for v in values}
    for r in records:
        for m in r.metrics:
            assert found[r.extras["setting"], r.extras["row"], r.seed, m.name, m.split] == m.value
        assert found[r.extras["setting"], r.extras["row"], r.seed, "seconds", ""] == r.seconds


def test_gap_and_time_share_are_paired_seed_by_seed():
    records = unlearn_records(["ccu"], seeds=2)
    values = per_seed_values(records)
    by = {(r.extras["row"], r.seed): r for r in records}
    for seed in (0, 1):
        ccu, retrain = by["ccu", seed], by["retrain", seed]
        (gap,) = [v.value for v in values if (v.method, v.seed, v.metric) == ("ccu", seed, "gap_to_retrain")]
        (ratio,) = [v.value for v in values if (v.method, v.seed, v.metric) == ("ccu", seed, "seconds_ratio")]
        assert gap == pytest.approx(gap_to_retrain(ccu.metrics, retrain.metrics))
        assert ratio == pytest.approx(ccu.seconds / retrain.seconds)
    original = [v.metric for v in values if v.method == "original"]
    assert "gap_to_retrain" in original and "seconds_ratio" not in original  # its seconds are its training
    assert mean_of(values, "original", "gap_to_retrain") == pytest.approx(
        sum(gap_to_retrain(by["original", s].metrics, by["retrain", s].metrics) for s in (0, 1)) / 2
    )


def test_the_aggregated_means_are_the_means_of_the_per_seed_values():
    records = unlearn_records(["ccu", "finetune"], seeds=3) + protect_records()
    values = per_seed_values(records)
    for table in aggregate(records):
        mine = values_of(values, table)
        for row in table.rows:
            for name, stat in (("gap_to_retrain", row.gap), ("seconds_ratio", row.ratio)):
                if stat is not None:
                    assert mean_of(mine, row.label, name) == pytest.approx(stat.mean)


def test_protection_time_share_and_failed_records():
    records = protect_records()
    failed = dataclasses.replace(records[1], extras={**records[1].extras, "status": "failed", "cell": "x"})
    values = per_seed_values([*records, failed])
    assert len(values) == len(per_seed_values(records))  # the failed record adds nothing
    (ratio,) = [v.value for v in values if (v.request, v.method, v.metric) == ("cnn", "unlearnable", "seconds_ratio")]
    assert ratio == pytest.approx(4.0 / 10.0)  # protection seconds / one clean victim training's


def test_compared_rows_in_order():
    tables = aggregate(unlearn_records(["a", "b", "c"], seeds=2) + protect_records())
    unlearn, protect = tables[0], tables[1]
    gaps = [r.gap.mean for r in by_gap(unlearn)]
    assert gaps == sorted(gaps) and {r.label for r in by_gap(unlearn)} == {"a", "b", "c"}
    ranked = by_metric(protect, ("mean_recall", "test"))
    assert [r.label for r in ranked] == ["adversarial_poison", "unlearnable", "random_noise"]  # clean is not compared
