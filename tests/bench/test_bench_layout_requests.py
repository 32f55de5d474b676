"""Bench grids on a dataset on disk beyond random requests: concept requests on phrases (``concepts``), identity
requests on an audio-visual layout's group column, and non-default decoding options (``layout_options``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data.layout_fixtures import CLIPS, make_av_csv, make_av_frames, make_caption_csv
from mmunlearn.benchmarking import ResultStore, parse_config, read_records, run_bench
from mmunlearn.benchmarking.cells import bench_cells
from mmunlearn.benchmarking.config import UnlearnGrid
from mmunlearn.benchmarking.grid_data import LayoutProbe, LayoutRef, data_identity, data_ref
from mmunlearn.benchmarking.requests import request_for
from mmunlearn.benchmarking.unlearn_cell import UnlearnCells, feature_projection
from mmunlearn.checkpoint import load_checkpoint, read_manifest
from mmunlearn.data import load_dataset
from mmunlearn.data.concepts import names_phrase, naming
from mmunlearn.errors import ConfigError

QUICK = {"methods": ["finetune"], "overrides": {"finetune": {"epochs": 1}}, "train": {"epochs": 1}}


def unlearn(path: object, layout: str, **extra: object) -> dict:
    return {"name": "t", "grids": [{"scenario": "unlearn", "dataset": str(path), "layout": layout, **extra}]}


def grid_of(raw: dict) -> UnlearnGrid:
    grid = parse_config(raw).grids[0]
    assert isinstance(grid, UnlearnGrid)
    return grid


def run(raw: dict, tmp_path: Path) -> list:
    """Run the bench of ``raw`` in ``tmp_path``; every cell must succeed; returns the records."""
    store = ResultStore(tmp_path / "store.jsonl")
    outcome = run_bench(parse_config(raw), store, tmp_path / "work", data_dir=tmp_path / "cache", progress=False)
    records = read_records(store.path)
    assert not outcome.failed, [r.extras.get("error") for r in records]
    return records


@pytest.fixture
def caption_csv(tmp_path: Path) -> Path:
    """10 images of 2 captions ``"Picture <k>, caption number <j>: a thing!"``; the seeded split keeps images
    0, 2, 3, 4, 5, 6, 7 and 9 in train (16 pairs)."""
    return make_caption_csv(tmp_path / "mydata")


@pytest.fixture
def av_frames(tmp_path: Path) -> Path:
    """7 clips of 4 speakers (``group`` column); the seeded split holds spk2 out for test, train has spk1 (2
    clips), spk3 and spk4 (1 each)."""
    return make_av_frames(tmp_path / "ave")


# -- concept requests on phrases ------------------------------------------------------------------------------
def test_the_probe_counts_the_training_pairs_the_load_finds(tmp_path: Path, caption_csv: Path) -> None:
    assert names_phrase("A Dog, running", "a  dog") and names_phrase("the dog.", "DOG")
    assert not names_phrase("a hotdog", "dog") and not names_phrase("two dogs", "dog")
    assert not names_phrase("picture 10", "picture 1")
    train = load_dataset(str(caption_csv), layout="csv", data_dir=tmp_path / "cache").train
    phrases = ("picture 3", "caption number 1")
    probe = LayoutProbe.of(str(caption_csv), "csv", phrases)  # splits drawn from the annotations alone
    assert probe.phrase_pairs == tuple(len(naming(train, p)) for p in phrases) and probe.train_pairs == len(train)


def test_a_concept_request_forgets_the_seeds_phrase(tmp_path: Path, caption_csv: Path) -> None:
    grid = grid_of(unlearn(caption_csv, "csv", requests=["concept"], concepts=["Picture 3", "picture  5"], **QUICK))
    assert grid.concepts == ("picture 3", "picture 5")
    assert grid.probe is not None and grid.probe.phrase_pairs == (2, 2) and grid.probe.train_pairs == 16
    splits = load_dataset(str(caption_csv), layout="csv", data_dir=tmp_path / "cache")
    train = splits.train
    for seed, k in ((0, 3), (1, 5), (2, 3)):  # concepts[seed % 2]
        req = request_for("concept", splits, seed, concepts=grid.concepts)
        expected = tuple(
            i for i, c in zip(train.ids, train.captions or [], strict=True) if c.startswith(f"Picture {k},")
        )
        assert req.ids == expected and len(expected) == 2 and req.concept == f"picture {k}"
        assert req.modalities == frozenset(train.modalities)  # the pairs leave entirely, as for built-in concepts
    with pytest.raises(ConfigError, match="needs the grid's 'concepts'"):
        request_for("concept", splits, 0)


def test_a_concept_grid_on_disk_runs_and_records_the_phrase(tmp_path: Path, caption_csv: Path) -> None:
    raw = unlearn(caption_csv, "csv", requests=["concept"], concepts=["picture 3"], layout_options={"image_size": 24},
                  **QUICK)  # fmt: skip
    records = run(raw, tmp_path)
    folder = tmp_path / "work" / "models" / UnlearnCells.shared_key(grid_of(raw), 0)
    assert load_checkpoint(folder).model.config_dict()["image_shape"] == [3, 24, 24]  # type: ignore[attr-defined]
    assert len(records) == 3 and {r.extras["status"] for r in records} == {"ok"}  # original, retrain, finetune
    for r in records:
        assert r.extras["concept"] == "picture 3" and r.extras["request_size"] == 2 and r.extras["setting"] == "concept"
        assert r.extras["cell"].startswith("unlearn/mydata/captions.csv[csv]/concept/seed0/")
        assert {m.name for m in r.metrics} >= {"mean_recall", "mia_svc"}


def test_the_phrases_are_in_the_concept_cells_keys(caption_csv: Path) -> None:
    def keys(concepts: list[str]) -> dict[str, str]:
        raw = unlearn(caption_csv, "csv", requests=["random", "concept"], concepts=concepts, **QUICK)
        return {c.key.split("@")[0]: c.key for c in bench_cells(parse_config(raw))}

    first, other = keys(["picture 3"]), keys(["picture 5"])
    assert first == keys(["picture 3"]) and first.keys() == other.keys()
    changed = {k for k in first if first[k] != other[k]}
    assert changed and all("/concept/" in k for k in changed)  # random cells keep their keys
    assert len(changed) == len([k for k in first if "/concept/" in k])


def test_bad_concepts_are_clear_errors(caption_csv: Path, av_frames: Path) -> None:
    def grid(**extra: object) -> None:
        parse_config(unlearn(caption_csv, "csv", **{**QUICK, **extra}))

    with pytest.raises(ConfigError, match=r"concept 'nope' names no training pair of .* \(16 pairs\)"):
        grid(requests=["concept"], concepts=["picture 3", "nope"])
    with pytest.raises(ConfigError, match="concept 'picture 1' names no training pair"):  # only in val/test
        grid(requests=["concept"], concepts=["picture 1"])
    with pytest.raises(ConfigError, match="concept 'a thing' names every training pair"):
        grid(requests=["concept"], concepts=["a thing"])
    with pytest.raises(ConfigError, match="\\['concept'\\] cannot run on a dataset on disk \\(csv\\) without"):
        grid(requests=["concept"])
    with pytest.raises(ConfigError, match="'concepts' is given but the grid has no concept request"):
        grid(requests=["random"], concepts=["picture 3"])
    with pytest.raises(ConfigError, match="concepts must be distinct non-blank phrases"):
        grid(requests=["concept"], concepts=["picture 3", "Picture  3"])
    with pytest.raises(ConfigError, match="concepts must be a non-empty list of strs"):
        grid(requests=["concept"], concepts=[3])
    with pytest.raises(ConfigError, match="'concepts' is for a dataset on disk"):
        parse_config({"name": "t", "grids": [{"scenario": "unlearn", "dataset": "shapes-captions",
                                              "requests": ["concept"], "concepts": ["red circle"]}]})  # fmt: skip
    with pytest.raises(ConfigError, match="\\['concept'\\] cannot run on a dataset on disk \\(av-frames\\)"):
        parse_config(unlearn(av_frames, "av-frames", requests=["concept"], concepts=["dog"], **QUICK))


# -- identity requests ----------------------------------------------------------------------------------------
def test_an_identity_request_forgets_the_images_of_the_seeds_identity(tmp_path: Path, av_frames: Path) -> None:
    grid = grid_of(unlearn(av_frames, "av-frames", requests=["identity"], **QUICK))
    assert grid.probe is not None and grid.probe.identities == ("spk1", "spk3", "spk4")
    splits = load_dataset(str(av_frames), layout="av-frames", data_dir=tmp_path / "cache")
    speaker = {clip: spk for clip, _, spk in CLIPS}
    for seed, name in ((0, "spk1"), (1, "spk3"), (2, "spk4"), (3, "spk1")):  # sorted identities[seed % 3]
        req = request_for("identity", splits, seed)
        assert req.ids == tuple(i for i in splits.train.ids if speaker[i.split("/")[-1]] == name), (seed, req.ids)
        assert req.ids and req.modalities == frozenset({"image"})  # visual-only, as for av-digits' fonts
        gold = req.gold_standard_set(splits.train)  # retrain keeps the sounds and frames of the identity
        assert len(gold) == len(splits.train)
    no_groups = load_dataset(str(make_av_csv(tmp_path / "avcsv")), layout="av-csv", data_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match="has no identities: an identity request needs"):
        request_for("identity", no_groups, 0)


def test_an_identity_grid_on_disk_runs_retrain_included(tmp_path: Path, av_frames: Path) -> None:
    records = run(unlearn(av_frames, "av-frames", requests=["identity"], **QUICK), tmp_path)
    assert sorted(r.method for r in records) == ["finetune", "original", "retrain"]
    assert {r.extras["status"] for r in records} == {"ok"}
    assert {r.extras["request_size"] for r in records} == {2}  # spk1's two training clips
    assert all(r.extras["cell"].startswith("unlearn/ave[av-frames]/identity/seed0/") for r in records)


# -- decoding options ------------------------------------------------------------------------------------------
def test_layout_options_are_in_the_keys_and_reach_the_model(tmp_path: Path, av_frames: Path) -> None:
    options = {"image_size": 16, "frames": 3}
    raw = unlearn(av_frames, "av-frames", layout_options=options, **QUICK)
    default = [c.key for c in bench_cells(parse_config(unlearn(av_frames, "av-frames", **QUICK)))]
    keys = [c.key for c in bench_cells(parse_config(raw))]
    assert keys == [c.key for c in bench_cells(parse_config(raw))] and not set(keys) & set(default)
    grid = grid_of(raw)
    assert data_identity(grid)["options"] == {"seed": 0, "image_size": 16, "frames": 3, "clip_seconds": 1.0,
                                              "skip_bad": False}  # fmt: skip
    ref = data_ref(grid)
    assert isinstance(ref, LayoutRef) and ref.options.image_size == 16 and ref.options.frames == 3
    assert not isinstance(data_ref(grid_of(unlearn(av_frames, "av-frames", **QUICK))), LayoutRef)
    records = run(raw, tmp_path)
    assert len(records) == 3 and all(r.extras["data"]["layout_options"] == options for r in records)
    folder = tmp_path / "work" / "models" / UnlearnCells.shared_key(grid, 0)
    shapes = load_checkpoint(folder).model.config_dict()["input_shapes"]  # type: ignore[attr-defined]
    assert shapes["image"] == [3, 16, 16] and shapes["video"] == [3, 3, 16, 16]  # the recipe's model, resized
    assert read_manifest(folder)["provenance"]["layout_options"]["image_size"] == 16
    again = run_bench(parse_config(raw), ResultStore(tmp_path / "store.jsonl"), tmp_path / "work",
                      data_dir=tmp_path / "cache", progress=False)  # fmt: skip
    assert (again.ran, again.skipped) == (0, 3)  # the same options resume


def test_bad_layout_options_are_clear_errors(caption_csv: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key\\(s\\) \\['seed'\\] in layout_options; known keys: clip_sec"):
        parse_config(unlearn(caption_csv, "csv", layout_options={"seed": 1}))
    with pytest.raises(ConfigError, match="known keys: clip_seconds, frames, image_size, skip_bad"):
        parse_config(unlearn(caption_csv, "csv", layout_options={"size": 64}))
    with pytest.raises(ConfigError, match=re.escape("layout_options.image_size must be an integer >= 1, got 0")):
        parse_config(unlearn(caption_csv, "csv", layout_options={"image_size": 0}))
    with pytest.raises(ConfigError, match=re.escape("layout_options.clip_seconds must be a positive number")):
        parse_config(unlearn(caption_csv, "csv", layout_options={"clip_seconds": "1"}))
    with pytest.raises(ConfigError, match=re.escape("layout_options.skip_bad must be true or false")):
        parse_config(unlearn(caption_csv, "csv", layout_options={"skip_bad": 1}))
    with pytest.raises(ConfigError, match="'layout_options' is for a dataset on disk"):
        parse_config({"name": "t", "grids": [{"scenario": "unlearn", "layout_options": {"image_size": 64}}]})


def test_the_projection_of_a_one_sample_request_is_a_point_at_the_origin(tmp_path: Path, av_frames: Path) -> None:
    """A tiny dataset on disk can make a one-sample request (10% of 4 clips): its projection is (0, 0)."""
    splits = load_dataset(str(av_frames), layout="av-frames", data_dir=tmp_path / "cache")
    grid = grid_of(unlearn(av_frames, "av-frames", **QUICK))
    model = UnlearnCells(tmp_path / "work", lambda ref: ref.load(tmp_path / "cache")).original(grid, 0)[0]
    one = splits.train.subset(splits.train.ids[:1], "one")
    assert feature_projection(model, one) == {"x": [0.0], "y": [0.0], "label": one.labels.tolist()}  # type: ignore[union-attr]
    two = feature_projection(model, splits.train.subset(splits.train.ids[:2], "two"))
    assert len(two["x"]) == 2 and two["x"][0] == -two["x"][1] != 0  # two points: symmetric about the mean
