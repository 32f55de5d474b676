"""Every registered protector: config validation, input validation, and a conformance run."""

from __future__ import annotations

import pytest
import torch
from caption_toy import make_captions

from mmunlearn.errors import ConfigError, DataError
from mmunlearn.models import build_model
from mmunlearn.protectors import PROTECTORS, ProtectedDataset
from mmunlearn.protectors.base import SURROGATE_ARCH
from mmunlearn.protectors.protected import noise_units

TINY = {
    "clean": {},
    "random_noise": {},
    "random_trigger": {},
    "em": {"outer_iters": 1, "surrogate_steps": 1, "pgd_steps": 1, "batch_size": 64},
    "trigger_only": {"outer_iters": 1, "trigger_iters": 1, "surrogate_steps": 1, "hotflip_candidates": 2,
                     "batch_size": 64},
    "mem": {"outer_iters": 2, "trigger_iters": 1, "surrogate_steps": 1, "pgd_steps": 1, "hotflip_candidates": 2,
            "batch_size": 64},
}  # fmt: skip


def test_every_protector_is_in_the_conformance_table():
    assert sorted(TINY) == PROTECTORS.names()


@pytest.mark.parametrize("name", sorted(TINY))
def test_conformance_on_small_shapes(name, shapes_small):
    data = shapes_small.train.take(torch.arange(256))
    p = PROTECTORS.create(name, progress=False, **TINY[name]).protect(data)
    assert isinstance(p, ProtectedDataset) and p.ids == data.ids and p.method == name
    cls = PROTECTORS.get(name)
    assert ("image" in cls.changes) == (p.noise is not None)
    assert ("text" in cls.changes) == (p.triggers is not None)
    if p.noise is not None:
        assert int(p.noise.abs().max()) <= noise_units(8 / 255)
    if p.triggers is not None:
        assert p.triggers.shape == (256, 3)
        assert int(p.triggers.min()) >= 2 and int(p.triggers.max()) < len(shapes_small.vocab)
    out = p.apply(data)
    assert float(out.inputs["image"].min()) >= 0 and float(out.inputs["image"].max()) <= 1
    assert float((out.inputs["image"] - data.inputs["image"]).abs().max()) <= 8 / 255 + 1e-6
    assert p.stats["seconds"] >= 0 and cls.paper


@pytest.mark.parametrize("name", ["random_noise", "em", "mem"])
@pytest.mark.parametrize("eps", [0.0, -0.1, 1.5, float("nan"), 0.001, "big"])
def test_epsilon_outside_the_unit_interval_is_a_config_error(name, eps):
    with pytest.raises(ConfigError, match="epsilon"):
        PROTECTORS.create(name, epsilon=eps)


def test_epsilon_of_one_is_valid():
    assert PROTECTORS.create("random_noise", epsilon=1.0).config.epsilon == 1.0


@pytest.mark.parametrize("name", ["mem", "trigger_only", "random_trigger"])
def test_trigger_length_zero_is_a_config_error(name):
    with pytest.raises(ConfigError, match="trigger_len"):
        PROTECTORS.create(name, trigger_len=0)


@pytest.mark.parametrize("name", ["mem", "trigger_only", "random_trigger"])
def test_trigger_longer_than_caption_budget_is_a_data_error(name, toy):
    protector = PROTECTORS.create(name, trigger_len=5, progress=False)
    with pytest.raises(DataError, match="trigger_len 5 does not fit"):
        protector.protect(toy)


def test_unknown_config_key_and_bad_values():
    with pytest.raises(ConfigError, match="unknown MEMConfig key"):
        PROTECTORS.create("mem", epsilonn=0.1)
    with pytest.raises(ConfigError, match="batch_size"):
        PROTECTORS.create("mem", batch_size=1)
    with pytest.raises(ConfigError, match="trigger_iters"):
        PROTECTORS.create("mem", outer_iters=2, trigger_iters=3)
    with pytest.raises(ConfigError, match="stop_accuracy"):
        PROTECTORS.create("em", stop_accuracy=1.5)
    with pytest.raises(ConfigError, match="epsilon"):
        PROTECTORS.create("clean", epsilon=0.1)  # clean has no budget: an unknown key


def test_bad_datasets_are_rejected_before_work(toy):
    mem = PROTECTORS.create("mem", progress=False)
    with pytest.raises(DataError, match="at least 2"):
        mem.protect(toy.take(torch.arange(1)))
    bright = toy.with_inputs(image=toy.inputs["image"] * 2)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        mem.protect(bright)
    no_text = toy.with_inputs()
    del no_text.inputs["text"]
    with pytest.raises(DataError, match="lacks"):
        mem.protect(no_text)


def test_surrogate_that_does_not_fit_is_rejected(toy):
    wrong = build_model("dual-encoder", 0, image_shape=[3, 16, 16], vocab=toy.vocab, text_len=8, **SURROGATE_ARCH)
    with pytest.raises(ConfigError, match="image shape"):
        PROTECTORS.create("em", progress=False).protect(toy, wrong)


def test_same_seed_same_protection_and_given_surrogate_untouched(toy):
    kw = {"outer_iters": 1, "trigger_iters": 1, "surrogate_steps": 2, "pgd_steps": 2, "hotflip_candidates": 3,
          "batch_size": 8, "progress": False}  # fmt: skip
    surrogate = build_model("dual-encoder", 5, image_shape=[3, 8, 8], vocab=toy.vocab, text_len=8, **SURROGATE_ARCH)
    before = {k: v.clone() for k, v in surrogate.state_dict().items()}
    a = PROTECTORS.create("mem", **kw).protect(toy, surrogate)
    b = PROTECTORS.create("mem", **kw).protect(toy, surrogate)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.triggers, b.triggers)
    assert all(torch.equal(before[k], v) for k, v in surrogate.state_dict().items())
    c = PROTECTORS.create("mem", **{**kw, "seed": 1}).protect(toy)
    assert not torch.equal(a.triggers, c.triggers)


def test_random_noise_is_uniform_in_the_budget():
    data = make_captions(n=64, side=16)
    p = PROTECTORS.create("random_noise", epsilon=4 / 255, seed=3).protect(data)
    interior = (data.inputs["image"] > 5 / 255) & (data.inputs["image"] < 250 / 255)
    values = p.noise[interior]
    assert set(values.unique().tolist()) == set(range(-4, 5))
    assert abs(float(values.float().mean())) < 0.1


def test_a_diverging_surrogate_stops_with_a_clear_error(toy):
    from mmunlearn.errors import DivergenceError

    surrogate = build_model("dual-encoder", 0, image_shape=[3, 8, 8], vocab=toy.vocab, text_len=8, **SURROGATE_ARCH)
    surrogate.log_scale.data.fill_(float("nan"))
    kw = {"outer_iters": 1, "surrogate_steps": 1, "pgd_steps": 1, "batch_size": 8, "progress": False}
    with pytest.raises(DivergenceError, match="no protection"):
        PROTECTORS.create("em", **kw).protect(toy, surrogate)
    with pytest.raises(DivergenceError, match="no protection"):
        PROTECTORS.create("em", **{**kw, "surrogate_steps": 0}).protect(toy, surrogate)
