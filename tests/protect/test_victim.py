"""Victims: seed rules, defences wired in, metrics on clean test pairs with chance levels."""

from __future__ import annotations

import pytest
import torch

from mmunlearn.errors import ConfigError, DataError
from mmunlearn.protectors import PROTECTORS
from mmunlearn.victim import VictimConfig, train_victim, victim_seed, victim_training_set


def test_victim_seed_must_differ_from_the_surrogates(shapes_small):
    data = shapes_small.train.take(torch.arange(64))
    p = PROTECTORS.create("trigger_only", outer_iters=1, trigger_iters=1, surrogate_steps=1, hotflip_candidates=2,
                          seed=4, progress=False).protect(data)  # fmt: skip
    assert victim_seed(p, None) == 5
    with pytest.raises(ConfigError, match="surrogate's seed"):
        victim_seed(p, 4)
    assert victim_seed(None, None) == 1 and victim_seed(None, 0) == 0


def test_victim_config_validation():
    with pytest.raises(ConfigError, match="defence"):
        VictimConfig(defence="magic")
    with pytest.raises(ConfigError, match="image_encoder"):
        VictimConfig(image_encoder="vit")


def test_training_set_applies_protection_then_defence(shapes_small):
    p = PROTECTORS.create("random_noise", seed=0).protect(shapes_small.train)
    data = victim_training_set(shapes_small.train, p, "mix_clean_50", 1)
    clean_rows = (data.inputs["image"] == shapes_small.train.inputs["image"]).flatten(1).all(1)
    assert int(clean_rows.sum()) >= len(data) // 2
    with pytest.raises(DataError):
        victim_training_set(shapes_small.val, p, "none", 1)


@pytest.mark.parametrize("encoder", ["cnn", "resnet"])
def test_train_victim_reports_clean_test_recall_with_chance(shapes_small, encoder):
    p = PROTECTORS.create("random_noise").protect(shapes_small.train)
    r = train_victim(shapes_small, p, VictimConfig(epochs=1, image_encoder=encoder, defence="crop", progress=False))
    names = [m.name for m in r.metrics]
    assert names == ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mean_recall"]
    assert all(m.split == "test" and m.chance is not None for m in r.metrics)
    assert r.value("i2t_r1") >= 0 and r.method == "random_noise" and r.seed == 1
    assert r.model.config.image_encoder == encoder
    assert r.record().scenario == "protect-victim"
