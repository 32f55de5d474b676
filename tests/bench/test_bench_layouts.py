"""Bench grids on a dataset on disk (``layout:``): parsing, errors, cell keys that follow the files, a real run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from data.layout_fixtures import make_av_csv, make_av_frames, make_caption_csv, make_karpathy
from mmunlearn.benchmarking import ResultStore, aggregate, load_config, parse_config, read_records, run_bench
from mmunlearn.benchmarking.cells import bench_cells
from mmunlearn.benchmarking.config import ProtectGrid, UnlearnGrid
from mmunlearn.benchmarking.grid_data import LayoutProbe, data_ref, grid_recipe
from mmunlearn.benchmarking.unlearn_cell import UnlearnCells
from mmunlearn.data import load_dataset
from mmunlearn.data.layouts.cache import source_fingerprint
from mmunlearn.data.layouts.spec import LAYOUTS, LayoutOptions
from mmunlearn.errors import ConfigError
from mmunlearn.recipes import recipe_for_data

CSV_YAML = """\
name: disk
grids:
  - scenario: unlearn
    dataset: {path}
    layout: csv
    seeds: [0]
    requests: [random]
    methods: [finetune]
    overrides: {{finetune: {{epochs: 1}}}}
    train: {{epochs: 1}}
"""


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.yaml").write_text(text)
    return folder / "bench.yaml"


def unlearn(path: object, layout: str = "csv", **extra: object) -> dict:
    return {"name": "t", "grids": [{"scenario": "unlearn", "dataset": str(path), "layout": layout, **extra}]}


def keys(raw: dict) -> list[str]:
    return [c.key for c in bench_cells(parse_config(raw))]


@pytest.fixture
def caption_csv(tmp_path: Path) -> Path:
    """A csv caption layout: ``mydata/captions.csv``, 10 images of 2 captions."""
    return make_caption_csv(tmp_path / "mydata")


# -- parsing -------------------------------------------------------------------------------------------------
def test_a_layout_grid_parses_with_a_path_relative_to_the_yaml(tmp_path: Path, caption_csv: Path) -> None:
    cfg = load_config(write(tmp_path, CSV_YAML.format(path="mydata/captions.csv")))
    (grid,) = cfg.grids
    assert isinstance(grid, UnlearnGrid)
    assert grid.dataset == str(caption_csv.resolve()) and grid.layout == "csv" and grid.size == "full"
    assert grid.probe is not None and grid.probe.kind == "image-caption" and not grid.probe.video
    assert grid.title == "mydata/captions.csv [csv]"
    plan = LAYOUTS.create("csv").parse(caption_csv, LayoutOptions())
    assert grid.probe.fingerprint == source_fingerprint(plan)
    # a built-in grid is unchanged: no layout, no probe
    builtin = parse_config({"name": "t", "grids": [{"scenario": "unlearn", "dataset": "av-digits"}]}).grids[0]
    assert builtin.layout is None and builtin.probe is None and builtin.title == "av-digits"


def test_the_title_names_the_folder_and_the_layout(tmp_path: Path) -> None:
    root = make_karpathy(tmp_path / "flickr8k")
    grid = parse_config(unlearn(root, "karpathy")).grids[0]
    assert isinstance(grid, UnlearnGrid) and grid.title == "flickr8k [karpathy]"
    protect = parse_config(
        {"name": "t", "grids": [{"scenario": "protect", "dataset": str(root), "layout": "karpathy"}]}
    ).grids[0]
    assert isinstance(protect, ProtectGrid) and protect.title == "flickr8k [karpathy]" and protect.size == "full"


def test_the_recipe_is_the_one_the_loaded_data_gets(tmp_path: Path, caption_csv: Path) -> None:
    av = make_av_frames(tmp_path / "ave")
    for path, layout in ((caption_csv, "csv"), (av, "av-frames")):
        grid = parse_config(unlearn(path, layout, methods=["finetune"])).grids[0]
        splits = load_dataset(str(path), layout=layout, data_dir=tmp_path / "cache")
        assert grid_recipe(grid, None) == recipe_for_data(splits)
        assert grid.probe is not None and grid.probe.fingerprint == splits.meta["source_fingerprint"]
    av_grid = parse_config(unlearn(av, "av-frames", methods=["finetune"])).grids[0]
    assert av_grid.probe is not None and av_grid.probe.video and av_grid.probe.kind == "audio-visual"


def test_bad_layout_path_size_and_requests_are_clear_errors(tmp_path: Path, caption_csv: Path) -> None:
    with pytest.raises(ConfigError, match="unknown layouts \\['nope'\\]; known layouts: av-csv, av-frames, coco"):
        parse_config(unlearn(caption_csv, "nope"))
    with pytest.raises(ConfigError, match="does not exist \\(relative paths are relative to"):
        parse_config(unlearn("missing/captions.csv"), source=str(tmp_path / "bench.yaml"))
    with pytest.raises(ConfigError, match="size has no meaning with layout 'csv'"):
        parse_config(unlearn(caption_csv, size="full"))
    with pytest.raises(ConfigError, match="layout 'csv' needs 'dataset'"):
        parse_config({"name": "t", "grids": [{"scenario": "unlearn", "layout": "csv"}]})
    with pytest.raises(ConfigError, match="cannot be read as karpathy"):
        parse_config(unlearn(caption_csv.parent, "karpathy"))
    for kind in ("concept", "group"):
        with pytest.raises(ConfigError, match=f"request kind\\(s\\) \\['{kind}'\\] cannot run on a dataset on disk"):
            parse_config(unlearn(caption_csv, requests=[kind]))
    av = make_av_frames(tmp_path / "ave")
    no_groups = make_av_csv(tmp_path / "avcsv")  # no group column: no identity to forget
    with pytest.raises(ConfigError, match="\\['identity'\\] cannot run on a dataset on disk \\(av-csv\\)"):
        parse_config(unlearn(no_groups, "av-csv", requests=["identity"], methods=["finetune"]))
    with pytest.raises(ConfigError, match="holds no captions, so scenario 'protect' cannot use it"):
        parse_config({"name": "t", "grids": [{"scenario": "protect", "dataset": str(av), "layout": "av-frames"}]})
    protect = {"scenario": "protect", "dataset": str(caption_csv), "layout": "csv", "victims": [{"regime": "finetune"}]}
    with pytest.raises(ConfigError, match="a finetune victim of a dataset on disk needs 'pretrain'"):
        parse_config({"name": "t", "grids": [protect]})
    protect["victims"] = [{"regime": "finetune", "pretrain": "shapes-captions"}]
    assert parse_config({"name": "t", "grids": [protect]}).grids[0].layout == "csv"
    with pytest.raises(ConfigError, match="unknown key\\(s\\) \\['probe'\\]"):  # the probe is taken, not given
        parse_config(unlearn(caption_csv, probe="x"))


# -- keys ----------------------------------------------------------------------------------------------------
def test_keys_follow_the_files_not_the_folder(tmp_path: Path, caption_csv: Path) -> None:
    first = keys(unlearn(caption_csv, methods=["finetune"]))
    assert first == keys(unlearn(caption_csv, methods=["finetune"]))  # a second parse: the same keys
    assert all(k.startswith("unlearn/mydata/captions.csv[csv]/random/seed0/") for k in first)
    assert not any(str(tmp_path) in k for k in first)  # no absolute path in a key
    moved = tmp_path / "elsewhere" / "mydata"
    shutil.copytree(caption_csv.parent, moved)  # copy2: the same sizes and modification times
    assert keys(unlearn(moved / "captions.csv", methods=["finetune"])) == first
    image = next((caption_csv.parent / "img").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")  # one media file changes
    changed = keys(unlearn(caption_csv, methods=["finetune"]))
    assert len(changed) == len(first) and not set(changed) & set(first)
    st = os.stat(caption_csv)
    os.utime(caption_csv, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the annotation file is touched
    assert not set(keys(unlearn(caption_csv, methods=["finetune"]))) & set(changed)


def test_layout_keys_name_the_data_in_settings_and_folders(caption_csv: Path) -> None:
    grid = parse_config(unlearn(caption_csv, methods=["finetune"])).grids[0]
    assert isinstance(grid, UnlearnGrid) and grid.probe is not None
    (cell, *_) = bench_cells(parse_config(unlearn(caption_csv, methods=["finetune"])))
    data = cell.settings()["data"]
    assert data["layout"] == "csv" and data["fingerprint"] == grid.probe.fingerprint
    name = UnlearnCells.shared_key(grid, 0)
    assert name.startswith("mydata_captions.csv-csv-seed0-") and "/" not in name
    other = UnlearnGrid(grid.dataset, "full", (0,), ("random",), ("finetune",), layout="csv",
                        probe=LayoutProbe("image-caption", False, "0" * 64))  # fmt: skip
    assert UnlearnCells.shared_key(other, 0) != name  # other files: another original
    ref = data_ref(grid)
    assert (ref.name, ref.size, ref.seed, ref.layout) == (grid.dataset, "full", 0, "csv")


def test_protect_grid_keys_follow_the_files(tmp_path: Path, caption_csv: Path) -> None:
    raw = {"name": "t", "grids": [{"scenario": "protect", "dataset": str(caption_csv), "layout": "csv",
                                   "protectors": ["random_noise"]}]}  # fmt: skip
    first = keys(raw)
    assert first == keys(raw) and all(k.startswith("protect/mydata/captions.csv[csv]/cnn/seed0/") for k in first)
    image = next((caption_csv.parent / "img").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert not set(keys(raw)) & set(first)


# -- a real run ----------------------------------------------------------------------------------------------
def test_a_bench_on_a_csv_layout_records_the_layout_and_resumes(tmp_path: Path, caption_csv: Path) -> None:
    cfg = load_config(write(tmp_path, CSV_YAML.format(path="mydata/captions.csv")))
    store = ResultStore(tmp_path / "store.jsonl")
    data_dir = tmp_path / "cache"
    outcome = run_bench(cfg, store, tmp_path / "work", data_dir=data_dir, progress=False)
    assert outcome.ran == 3 and not outcome.failed  # original, retrain, finetune
    records = read_records(store.path)
    assert {r.extras["status"] for r in records} == {"ok"}
    for r in records:
        assert r.extras["data"] == {"dataset": str(caption_csv.resolve()), "layout": "csv",
                                    "fingerprint": cfg.grids[0].probe.fingerprint}  # type: ignore[union-attr]  # fmt: skip
        assert r.extras["dataset"] == "mydata/captions.csv [csv]" and r.extras["size"] == ""
    (table,) = aggregate(records)
    assert table.title == "unlearn · mydata/captions.csv [csv] · request random"
    assert (data_dir / "layouts").is_dir()  # decoded into the bench's data dir, not the user's cache
    again = run_bench(load_config(tmp_path / "bench.yaml"), store, tmp_path / "work", data_dir=data_dir,
                      progress=False)  # fmt: skip
    assert (again.ran, again.skipped) == (0, 3)
