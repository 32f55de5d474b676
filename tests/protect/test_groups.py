"""Grouped protection: k-means groups of images share one noise and one trigger (`protectors.grouping`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from caption_toy import make_captions
from sklearn.cluster import KMeans

from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.protectors import PROTECTORS
from mmunlearn.protectors.base import SURROGATE_ARCH
from mmunlearn.protectors.grouping import (
    group_leaders,
    group_stats,
    image_rows,
    kmeans_labels,
    tie_batch_first,
    tie_batch_mean,
)
from mmunlearn.protectors.minmin import MinMinSettings, _identity
from mmunlearn.protectors.protected import ProtectedDataset, add_noise

TINY = {
    "mem": {"outer_iters": 2, "trigger_iters": 1, "surrogate_steps": 1, "pgd_steps": 2, "hotflip_candidates": 2,
            "batch_size": 4},
    "em": {"outer_iters": 1, "surrogate_steps": 1, "pgd_steps": 2, "batch_size": 4, "stop_accuracy": None},
    "trigger_only": {"outer_iters": 1, "trigger_iters": 1, "surrogate_steps": 1, "hotflip_candidates": 2,
                     "batch_size": 4},
    "random_noise": {},
    "random_trigger": {},
}  # fmt: skip


def surrogate(data):
    return build_model("dual-encoder", 0, image_shape=list(data.inputs["image"].shape[1:]), vocab=list(data.vocab),
                       text_len=int(data.inputs["text"].shape[1]), **SURROGATE_ARCH)  # fmt: skip


def captioned(n_images: int = 6, per_image: int = 2):
    """A toy set with ``per_image`` captions per image (rows interleaved, so an image's rows are not adjacent)."""
    data = make_captions(n=n_images * per_image)
    image = torch.arange(n_images * per_image) % n_images
    data.inputs["image"] = data.inputs["image"][image]  # every caption of an image has the same pixels
    data.groups["image"] = [f"img{int(i)}" for i in image]
    return data


def by_group(stats: dict) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for row, g in enumerate(stats["assignment"]):
        groups.setdefault(g, []).append(row)
    return groups


# -- assignment ------------------------------------------------------------------------------------------
def test_kmeans_labels_match_sklearn_on_hand_normalised_features():
    data = captioned()
    model = surrogate(data)
    firsts, image_of = image_rows(data)
    assert firsts.tolist() == list(range(6)) and image_of.tolist() == [i % 6 for i in range(12)]
    with torch.no_grad():
        emb = model.eval().encode_image(data.inputs["image"][firsts]).double()
    feats = (emb / emb.norm(dim=1, keepdim=True)).numpy()
    ref = KMeans(n_clusters=3, random_state=0, n_init=10).fit_predict(feats)
    leaders = group_leaders(data, model, 3, 0)
    for i in range(12):  # same partition: two rows share a leader iff sklearn put their images together
        for j in range(12):
            assert (leaders[i] == leaders[j]) == (ref[i % 6] == ref[j % 6])
    assert all(int(leaders[i]) == min(j for j in range(12) if ref[j % 6] == ref[i % 6]) for i in range(12))


def test_kmeans_labels_are_numbered_by_first_appearance():
    pts = torch.tensor([[5.0, 5.0], [0.0, 0.0], [5.1, 5.0], [0.1, 0.0], [9.0, 0.0]], dtype=torch.float64)
    assert kmeans_labels(pts, 3, 0).tolist() == [0, 1, 0, 1, 2]


def test_captions_of_one_image_stay_in_one_group_and_count_is_k():
    data = captioned(n_images=8, per_image=3)
    stats = group_stats(group_leaders(data, surrogate(data), 4, 0))
    assert stats["count"] == 4 and sum(stats["sizes"]) == 24 and len(stats["assignment"]) == 24
    for rows in by_group(stats).values():
        assert len(rows) % 3 == 0  # whole images only
    names = data.groups["image"]
    assert all(stats["assignment"][i] == stats["assignment"][names.index(names[i])] for i in range(24))


def test_assignment_is_deterministic_for_a_seed():
    data = make_captions(n=40)
    model = surrogate(data)
    a, b = group_leaders(data, model, 5, 3), group_leaders(data, model, 5, 3)
    assert torch.equal(a, b) and len(a.unique()) == 5


# -- the tie functions on groups met partly by a batch ---------------------------------------------------
def test_tie_batch_mean_and_first_reach_every_member_of_a_partly_met_group():
    leaders = torch.tensor([0, 1, 0, 1, 0, 5])  # groups {0, 2, 4}, {1, 3}, {5}
    noise = torch.zeros(6, 1, 1, 2, dtype=torch.int16)
    idx = torch.tensor([4, 2, 5])  # group 0 met by two of its three rows, group 1 not at all
    update = torch.tensor([[1.0, 3.0], [2.0, -9.0], [4.0, 0.4]]).view(3, 1, 1, 2) / 255
    tie_batch_mean(noise, idx, update, leaders, units=4)
    ref = torch.zeros(6, 2)
    ref[[0, 2, 4]] = torch.tensor([round(1.5), max(-4, round(-3.0))], dtype=torch.float)  # mean, then clip
    ref[5] = torch.tensor([4.0, 0.0])
    assert torch.equal(noise.view(6, 2).float(), ref)
    values = torch.arange(12).view(6, 2)
    tie_batch_first(values, idx, leaders)
    assert values[[0, 2, 4]].tolist() == [[8, 9]] * 3 and values[[1, 3]].tolist() == [[2, 3], [6, 7]]


# -- whole protections -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(TINY))
def test_every_row_of_a_group_carries_the_same_noise_and_trigger(method):
    data = captioned(n_images=8, per_image=2)
    p = PROTECTORS.create(method, progress=False, groups=3, **TINY[method]).protect(data)
    stats = p.stats["groups"]
    assert stats["count"] == 3 and sum(stats["sizes"]) == 16
    groups = by_group(stats)
    assert any(len(rows) > 2 for rows in groups.values())  # some group spans several images
    for rows in groups.values():
        for t in (p.noise, p.triggers):
            if t is not None:
                assert all(torch.equal(t[rows[0]], t[r]) for r in rows)
    if p.noise is not None:
        assert int(p.noise.abs().max()) <= 8


@pytest.mark.parametrize("method", ["mem", "random_noise", "random_trigger"])
def test_groups_none_is_the_sample_wise_run(method):
    data = make_captions(n=12)
    base = PROTECTORS.create(method, progress=False, **TINY[method]).protect(data)
    none = PROTECTORS.create(method, progress=False, groups=None, **TINY[method]).protect(data)
    per_pair = PROTECTORS.create(method, progress=False, groups=12, **TINY[method]).protect(data)
    assert "groups" not in base.stats and per_pair.stats["groups"]["sizes"] == [1] * 12
    for a, b in ((base, none), (base, per_pair)):
        for name in ("noise", "triggers"):
            x, y = getattr(a, name), getattr(b, name)
            if name == "noise" and method == "random_noise" and b is per_pair:  # grouped noise is stored unclipped
                x, y = add_noise(data.inputs["image"], x), add_noise(data.inputs["image"], y)  # same release
            assert (x is None and y is None) or torch.equal(x, y)
    if method == "mem":
        few = PROTECTORS.create(method, progress=False, groups=2, **TINY[method]).protect(data)
        assert not torch.equal(few.triggers, base.triggers)  # the comparison can fail


def test_sample_wise_work_folders_keep_their_identity():
    data = make_captions(n=8)
    model = surrogate(data)
    plain = _identity(data, model, MinMinSettings(epsilon=8 / 255), 12)
    assert "groups" not in plain["settings"]
    grouped = _identity(data, model, dataclasses.replace(MinMinSettings(epsilon=8 / 255), groups=2), 12)
    assert grouped["settings"]["groups"] == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_group_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="groups"):
        PROTECTORS.create("mem", groups=bad)


@pytest.mark.parametrize("method", list(TINY))
def test_more_groups_than_images_is_a_config_error_at_protect(method):
    data = captioned(n_images=5, per_image=2)  # 10 rows, 5 images
    protector = PROTECTORS.create(method, progress=False, groups=6, **TINY[method])
    with pytest.raises(ConfigError, match="groups=6 exceeds the 5 distinct images"):
        protector.protect(data)
    assert np.isfinite(
        PROTECTORS.create(method, progress=False, groups=5, **TINY[method]).protect(data).stats["seconds"]
    )


def test_the_assignment_travels_with_the_saved_protection(tmp_path):
    data = captioned(n_images=6, per_image=2)
    p = PROTECTORS.create("random_trigger", groups=2).protect(data)
    p.save(tmp_path / "p")
    loaded = ProtectedDataset.load(tmp_path / "p")
    assert loaded.stats["groups"] == p.stats["groups"] and len(loaded.stats["groups"]["assignment"]) == 12
    assert loaded.ids == p.ids and torch.equal(loaded.triggers, p.triggers)


class Interrupt(Exception):
    pass


def test_an_interrupted_grouped_protection_resumes_to_the_same_result(tmp_path, monkeypatch):
    import mmunlearn.protectors.minmin as M

    config = {**TINY["mem"], "outer_iters": 3, "groups": 4, "progress": False}
    data = captioned(n_images=8, per_image=2)
    straight = PROTECTORS.create("mem", **config).protect(data)
    calls, real = {"n": 0}, M.inner_pass

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(M, "inner_pass", interrupted)
    with pytest.raises(Interrupt):
        PROTECTORS.create("mem", **config).protect(data, work_dir=tmp_path)
    monkeypatch.setattr(M, "inner_pass", real)
    resumed = PROTECTORS.create("mem", **config).protect(data, work_dir=tmp_path)  # groups recomputed: same ones
    assert resumed.stats["groups"] == straight.stats["groups"]
    assert torch.equal(resumed.noise, straight.noise) and torch.equal(resumed.triggers, straight.triggers)
