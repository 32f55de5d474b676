"""subspace_edit's ``retain_samples``: the gold-standard subset that estimates ``A_R``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import mmunlearn.unlearn.subspace_edit  # noqa: F401
from mmunlearn.data import ForgetRequest
from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from mmunlearn.unlearn.subspace_edit import retain_subset
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = {"batch_size": 8, "progress": False, "ranks": (1, 2, 3, 4, 5, 6, 7)}


def classifier_case() -> tuple[torch.nn.Module, UnlearnData]:
    data = make_av(48)
    req = ForgetRequest.random_fraction(data, 0.25, seed=0, modalities=("image",))
    model = build_model("multimodal-classifier", 0, **CFG).eval()
    return model, UnlearnData.from_request(req, data, make_av(24, 3))


def test_retain_subset_is_seeded_sized_and_drawn_from_the_gold_standard():
    _, data = classifier_case()
    gold = data.gold_standard
    assert retain_subset(gold, None, 0) is gold and retain_subset(gold, len(gold) + 5, 0) is gold
    a, b, c = retain_subset(gold, 10, 0), retain_subset(gold, 10, 0), retain_subset(gold, 10, 1)
    assert len(a) == 10 and a.ids == b.ids and a.ids != c.ids
    assert set(a.ids) <= set(gold.ids) and len(set(a.ids)) == 10
    order = [gold.ids.index(i) for i in a.ids]
    assert order == sorted(order)


def test_retain_samples_changes_only_the_estimate_of_a_r():
    model, data = classifier_case()
    full = UNLEARNERS.create("subspace_edit", **FAST).unlearn(model, data)
    same = UNLEARNERS.create("subspace_edit", **FAST, retain_samples=10_000).unlearn(model, data)
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in full.state_dict().items())
    sub = dataclasses.replace(data, gold_standard=retain_subset(data.gold_standard, 12, 0))
    expected = UNLEARNERS.create("subspace_edit", **FAST).unlearn(model, sub)
    got = UNLEARNERS.create("subspace_edit", **FAST, retain_samples=12).unlearn(model, data)
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in expected.state_dict().items())
    assert not torch.equal(got.head.weight, full.head.weight)


def test_retain_samples_config_check():
    with pytest.raises(ConfigError, match="retain_samples must be >= 1"):
        UNLEARNERS.create("subspace_edit", retain_samples=0)
