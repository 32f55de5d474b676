"""Defaults that travel (issue 18, item 3): request sizes (``random@F``) and a one-class request (``class``) in
one grid, and one study per tuned method whose frozen configuration runs on every request of the grid.

Everything runs on tiny hand-made data (tests/toy.py), in seconds; only the grid parser sees av-digits' name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmunlearn.benchmarking import parse_config
from mmunlearn.benchmarking.cells import Cell, grid_cells
from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.benchmarking.execute import annotate
from mmunlearn.benchmarking.requests import canonical_request, request_for, request_kind
from mmunlearn.benchmarking.tuning import evaluation_requests, validation_request
from mmunlearn.benchmarking.unlearn_cell import UnlearnCells
from mmunlearn.data import DatasetSplits, ForgetRequest
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.pipeline import run_request
from mmunlearn.records.aggregate import aggregate
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS
from toy import make_av, make_pairs

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


def unlearn(**raw: Any) -> dict[str, Any]:
    base = {"scenario": "unlearn", "dataset": "av-digits", "size": "small", "seeds": [0], "methods": ["finetune"]}
    return {"name": "t", "grids": [{**base, **raw}]}


def grid(**raw: Any) -> UnlearnGrid:
    g = parse_config(unlearn(**raw)).grids[0]
    assert isinstance(g, UnlearnGrid)
    return g


def refused(**raw: Any) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(unlearn(**raw))
    return str(e.value)


def splits_of(train: MultimodalDataset, val: MultimodalDataset, test: MultimodalDataset) -> DatasetSplits:
    return DatasetSplits("av-digits", "small", 0, train, val, test, None, None, {}, Path("."))


# -- parsing ---------------------------------------------------------------------------------------------
def test_random_at_a_share_is_parsed_and_spelled_one_way():
    assert request_kind("random@0.05") == ("random", 0.05) and request_kind("random") == ("random", None)
    assert request_kind("class") == ("class", None)
    assert canonical_request("random@5e-2") == canonical_request("random@.050") == "random@0.05"
    text = "requests: [random, random@0.05, random@.25, identity, class]"  # a plain YAML scalar, not a tag
    g = grid(**yaml.safe_load(text))
    assert g.requests == ("random", "random@0.05", "random@0.25", "identity", "class")


@pytest.mark.parametrize("name", ["random@0", "random@1.5", "random@x", "random@", "random@1", "random@nan"])
def test_a_share_outside_zero_one_or_not_a_number_is_refused(name):
    assert "must be a number in (0, 1)" in refused(requests=["random", name])


def test_other_bad_request_names_are_refused():
    assert "twice" in refused(requests=["random@0.05", "random@5e-2"])
    assert "unknown requests ['identity@0.5']" in refused(requests=["identity@0.5"])
    assert "unknown requests on shapes-captions ['class']" in refused(dataset="shapes-captions", requests=["class"])
    assert "must be a number in (0, 1)" in refused(requests=["random"], tune={"request": "random@2"})
    assert "tune.request kinds" in refused(requests=["random"], tune={"request": "concept"})


# -- keys ------------------------------------------------------------------------------------------------
BEFORE = {  # recorded from the code before random@F and class existed (same grid, seed 1)
    "original": "unlearn/av-digits/small/random/seed1/original@eb186d5c",
    "retrain": "unlearn/av-digits/small/random/seed1/retrain@152b555f",
    "finetune": "unlearn/av-digits/small/random/seed1/finetune@54515dd5",
    "finetune (tuned)": "unlearn/av-digits/small/random/seed1/finetune (tuned)@6730526a",
}


def keyed(**raw: Any) -> UnlearnGrid:
    return grid(seeds=[0, 1], overrides={"finetune": {"epochs": 1}}, train={"epochs": 1},
                tune={"trials": 2, "seed": 100}, **raw)  # fmt: skip


def test_a_plain_random_cell_keeps_its_key():
    g = keyed(requests=["random", "identity"])
    assert {label: Cell(g, 1, label, request="random").key for label in BEFORE} == BEFORE


def test_a_sized_random_cell_has_its_own_key_and_share():
    g = keyed(requests=["random", "random@0.05", "random@0.25"])
    keys = {r: Cell(g, 1, "finetune", request=r).key for r in g.requests}
    assert keys["random"] == BEFORE["finetune"]  # the other requests of the grid change no default row's key
    assert len(set(keys.values())) == 3 and "/random@0.05/seed1/finetune@" in keys["random@0.05"]
    assert Cell(g, 1, "finetune", request="random@0.05").settings()["fraction"] == 0.05
    moved = dataclasses.replace(g, fraction=0.2)  # the grid's fraction is plain random's, not random@F's
    assert Cell(moved, 1, "finetune", request="random@0.05").key == keys["random@0.05"]
    assert Cell(moved, 1, "finetune", request="random").key != keys["random"]


# -- the requests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,share", [("random@0.05", 0.05), ("random@0.25", 0.25), ("random@0.5", 0.5)])
def test_a_sized_random_request_has_round_share_times_n_samples(name, share):
    train = make_av(64)
    splits = splits_of(train, make_av(16, 1, "val"), make_av(16, 2, "test"))
    req = request_for(name, splits, seed=3, fraction=0.1)
    assert len(req.ids) == round(share * 64) and len(set(req.ids)) == len(req.ids)
    assert req.modalities == frozenset({"image"})
    assert len(request_for("random", splits, seed=3, fraction=0.1).ids) == round(0.1 * 64)


@pytest.mark.parametrize("seed", [0, 1, 6, 11])
def test_a_class_request_forgets_the_images_of_the_seeds_class(seed):
    train = make_av(64)  # labels i % 4
    req = request_for("class", splits_of(train, train, train), seed=seed)
    wanted = seed % 4
    assert set(req.ids) == {sid for i, sid in enumerate(train.ids) if i % 4 == wanted} and len(req.ids) == 16
    assert req.modalities == frozenset({"image"})  # visual-only, as random and identity on audio-visual data
    gold = req.gold_standard_set(train)  # retrain's data: every sample, the class's images missing
    pos = train.positions(req.ids)
    assert len(gold) == len(train) and not gold.present["image"][pos].any() and gold.present["audio"][pos].all()
    assert int(gold.present["image"].sum()) == len(train) - 16 and float(gold.inputs["image"][pos].abs().sum()) == 0


def test_a_class_request_on_caption_data_is_refused():
    pairs = make_pairs(16)
    with pytest.raises(ConfigError, match="class labels"):
        request_for("class", splits_of(pairs, pairs, pairs), seed=0)


def test_retrain_and_the_metrics_run_on_a_class_request():
    train, val, test = make_av(64), make_av(32, 4, "val"), make_av(32, 5, "test")
    model = train_model(build_model("multimodal-classifier", 0, **CFG), train, TrainConfig(epochs=2, batch_size=16,
                        progress=False)).model.eval()  # fmt: skip
    req = request_for("class", splits_of(train, val, test), seed=1)
    retrain = UNLEARNERS.create("retrain", epochs=2, batch_size=16, seed=0, progress=False)
    out = run_request(model, train, req, retrain, validation=val, test=test)
    names = {m.name for m in out.metrics}
    assert len(out.data.unlearn) == 16 and {"acc_image", "acc_fused"} <= names
    forgotten = [m for m in out.metrics if m.name == "acc_image" and m.split == "unlearn"]
    assert forgotten and 0.0 <= forgotten[0].value <= 1.0


def test_a_validation_request_avoids_sized_and_class_requests():
    train = make_av(64)
    splits = splits_of(train, train, train)
    g = dataclasses.replace(grid(), seeds=(0, 1), requests=("random", "random@0.25", "class"))
    avoid = evaluation_requests(g, splits)
    assert [len(r.ids) for r in avoid["random@0.25"]] == [16, 16]
    taken = {sid for reqs in avoid.values() for r in reqs for sid in r.ids}
    for name, n in (("random", 6), ("random@0.05", 3)):
        req, overlap = validation_request(name, splits, 100, g.fraction, avoid)
        assert overlap == 0 and len(req.ids) == n and not set(req.ids) & taken
    cls, _ = validation_request("class", splits, 100, g.fraction, avoid)  # class 100 % 4 = 0 is seed 0's: next
    assert not set(cls.ids) & {sid for r in avoid["class"] for sid in r.ids}


# -- one study for every request -------------------------------------------------------------------------
def test_one_study_per_method_and_the_same_tuned_config_on_every_request(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    train, val, test = make_av(64), make_av(32, 4, "val"), make_av(32, 5, "test")
    splits = splits_of(train, val, test)
    model = train_model(build_model("multimodal-classifier", 0, **CFG), train, TrainConfig(epochs=2, batch_size=16,
                        progress=False)).model.eval()  # fmt: skip
    g = grid(requests=["random", "random@0.25", "class"], overrides={"finetune": {"epochs": 1, "batch_size": 16}},
             train={"epochs": 1, "batch_size": 16}, tune={"trials": 2, "seed": 100})  # fmt: skip
    cells = UnlearnCells(tmp_path, lambda ref: splits)
    monkeypatch.setattr(cells, "original", lambda grid, seed: (model, 1.0))
    tuned = [c for c in grid_cells(g) if c.label == "finetune (tuned)"]
    assert [c.request for c in tuned] == ["random", "random@0.25", "class"]
    assert len({cells.shared(c) for c in tuned}) == 1  # one study shared by every request's tuned cell
    records = [cells.run(c) for c in tuned]
    studies = list((tmp_path / "tuning").glob("*.sqlite3"))
    assert len(studies) == 1
    summaries = optuna.get_all_study_summaries(f"sqlite:///{studies[0]}")
    assert len(summaries) == 1 and summaries[0].n_trials == 2  # two trials, not two per request
    configs = [r.extras["tuned_config"] for r in records]
    assert configs[0] == configs[1] == configs[2] and set(configs[0]) == {"lr"}
    assert {r.config["lr"] for r in records} == {configs[0]["lr"]}
    assert [r.extras["request_size"] for r in records] == [6, 16, 16]
    assert len({r.extras["tuning_study"] for r in records}) == 1

    annotated = [annotate(r, c, None) for r, c in zip(records, tuned, strict=True)]
    titles = [t.title for t in aggregate(annotated)]  # each request its own table in the report
    assert titles == [f"unlearn · av-digits (small) · request {r}" for r in ("random", "random@0.25", "class")]


def test_the_grid_with_five_requests_tunes_each_method_once(tmp_path):
    g = grid(seeds=[0, 1, 2], requests=["random", "random@0.05", "random@0.25", "identity", "class"],
             methods=["finetune", "neggrad_plus"], tune={"trials": 3})  # fmt: skip
    assert g.tune is not None and g.tune.request == "random"  # the default: the grid's first request
    protocol = g.tuning_protocol("finetune")
    assert protocol["request"] == {"kind": "random", "seed": 100, "fraction": 0.1}
    assert protocol["avoid"]["requests"] == list(g.requests)
    cells = [c for c in grid_cells(g) if g.tuned_method(c.label)]
    assert len(cells) == 3 * 5 * 2  # seeds x requests x tuned rows
    runner = UnlearnCells(tmp_path, lambda ref: None)  # type: ignore[arg-type, return-value]
    studies = {label: {runner.shared(c) for c in cells if c.label == label} for label in ("finetune (tuned)",
               "neggrad_plus (tuned)")}  # fmt: skip
    assert all(len(s) == 1 for s in studies.values()) and len(set.union(*studies.values())) == 2
    sized = grid(requests=["random", "random@0.05"], tune={"request": "random@0.05"})
    assert sized.tuning_protocol("finetune")["request"]["fraction"] == 0.05


def test_forget_request_class_constructor_is_used_unchanged():
    train = make_av(12)
    assert ForgetRequest.one_class(train, 2).ids == request_for("class", splits_of(train, train, train), 2).ids
