"""The gap to retrain against a naive reference, on records that differ from the retrained model's."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmunlearn.records.scenarios import HEADLINE, gap_to_retrain
from mmunlearn.results import MetricResult


def records(values):
    return [MetricResult(name, split, v) for (name, split), v in values.items()]


def naive_gap(metrics, retrain, headline):
    diffs = []
    for key in headline:
        mine = [m.value for m in metrics if (m.name, m.split) == key]
        ref = [m.value for m in retrain if (m.name, m.split) == key]
        if mine and ref:
            diffs.append(abs(mine[0] - ref[0]))
    return sum(diffs) / len(diffs)


MINE = {("acc_fused", "retain"): 0.90, ("acc_fused", "test"): 0.70, ("acc_image", "unlearn"): 0.40}
REF = {("acc_fused", "retain"): 0.95, ("acc_fused", "test"): 0.60, ("acc_image", "unlearn"): 0.10}


def test_mean_absolute_difference_over_the_headline():
    gap = gap_to_retrain(records(MINE), records(REF))
    assert gap == pytest.approx((0.05 + 0.10 + 0.30) / 3)
    assert gap == pytest.approx(naive_gap(records(MINE), records(REF), HEADLINE))


def test_keys_missing_on_one_side_are_ignored():
    mine = records({**MINE, ("acc_audio", "unlearn"): 0.2})  # retrain lacks it
    ref = records({**REF, ("mia_svc", "unlearn"): 0.5})  # the method lacks it
    assert gap_to_retrain(mine, ref) == pytest.approx((0.05 + 0.10 + 0.30) / 3)


def test_metrics_outside_the_headline_are_ignored():
    mine = records({**MINE, ("mia_loss_auc", "unlearn"): 0.9, ("acc_fused", "validation"): 0.1})
    ref = records({**REF, ("mia_loss_auc", "unlearn"): 0.5, ("acc_fused", "validation"): 0.8})
    assert gap_to_retrain(mine, ref) == pytest.approx((0.05 + 0.10 + 0.30) / 3)


def test_no_shared_headline_metric_is_an_error():
    with pytest.raises(ValueError, match="no headline metric"):
        gap_to_retrain(records({("acc_fused", "test"): 0.7}), records({("acc_fused", "retain"): 0.7}))
    with pytest.raises(ValueError, match="no headline metric"):
        gap_to_retrain(records({("mia_loss_auc", "unlearn"): 0.7}), records({("mia_loss_auc", "unlearn"): 0.1}))


def test_default_headline_is_HEADLINE_and_a_custom_one_replaces_it():
    mine = {k: 0.1 * i for i, k in enumerate(HEADLINE)} | {("mia_loss_auc", "unlearn"): 0.9}
    ref = {k: 1 - 0.15 * i for i, k in enumerate(HEADLINE)} | {("mia_loss_auc", "unlearn"): 0.2}
    default = gap_to_retrain(records(mine), records(ref))
    assert default == pytest.approx(naive_gap(records(mine), records(ref), HEADLINE))
    assert default == gap_to_retrain(records(mine), records(ref), HEADLINE)
    custom = [("mia_loss_auc", "unlearn"), ("acc_fused", "test")]
    assert gap_to_retrain(records(mine), records(ref), custom) == pytest.approx((0.7 + abs(0.1 - 0.85)) / 2)


KEYS = [*HEADLINE, ("mia_loss_auc", "unlearn"), ("acc_fused", "validation")]


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.sampled_from(KEYS), st.floats(0, 1), min_size=1),
    st.dictionaries(st.sampled_from(KEYS), st.floats(0, 1), min_size=1),
)
def test_matches_naive_on_random_records(mine, ref):
    shared = [k for k in HEADLINE if k in mine and k in ref]
    if not shared:
        with pytest.raises(ValueError):
            gap_to_retrain(records(mine), records(ref))
        return
    got = gap_to_retrain(records(mine), records(ref))
    assert got == pytest.approx(naive_gap(records(mine), records(ref), HEADLINE))
    assert got == pytest.approx(gap_to_retrain(records(ref), records(mine)))  # symmetric
