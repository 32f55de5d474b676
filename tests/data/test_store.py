import json
import logging

import pytest
import torch

from mmunlearn.data import load_dataset
from mmunlearn.data.builder import DATASETS, BuiltData, DatasetBuilder
from mmunlearn.data.core import SplitData
from mmunlearn.data.store import build_dataset, default_data_dir, verify_cache
from mmunlearn.errors import DataError
from mmunlearn.registry import UnknownNameError


class Counting(DatasetBuilder):
    """A tiny deterministic builder that counts how often it really builds."""

    name = "test-counting"
    modalities = ("image", "audio")
    num_classes = 2
    builds = 0

    def build(self, size, seed, progress=False):
        Counting.builds += 1
        g = torch.Generator().manual_seed(seed)
        splits = {}
        for s, n in (("train", 6), ("val", 2), ("test", 3)):
            splits[s] = SplitData(
                ids=[f"{s}-{i}" for i in range(n)],
                tensors={
                    "image": torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8),
                    "audio": torch.randn(n, 3, 5, generator=g),
                },
                labels=torch.arange(n) % 2,
                groups={"font": ["f"] * n},
            )
        return BuiltData(splits, meta={"seed": seed})


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register the counting builder for this module's tests only (the registry is left as it was)."""
    monkeypatch.setitem(DATASETS._entries, "test-counting", Counting)


def test_build_once_then_load_verified(tmp_path):
    Counting.builds = 0
    d = load_dataset("test-counting", "small", 1, tmp_path)
    d2 = load_dataset("test-counting", "small", 1, tmp_path)
    assert Counting.builds == 1
    assert d.train.ids == d2.train.ids and torch.equal(d.train.inputs["audio"], d2.train.inputs["audio"])
    assert d.train.inputs["image"].dtype == torch.float32 and d.train.num_classes == 2
    assert verify_cache(d.path) is None and not list(d.path.parent.glob(".*"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    path = build_dataset("test-counting", "small", 2, tmp_path)
    reference = load_dataset("test-counting", "small", 2, tmp_path).train.inputs["audio"].clone()
    target = path / "train.safetensors"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-3] ^= 0x55
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        target.unlink()
    else:
        (path / "manifest.json").write_text("{")
    assert verify_cache(path) is not None
    Counting.builds = 0
    with caplog.at_level(logging.WARNING):
        again = load_dataset("test-counting", "small", 2, tmp_path)
    assert Counting.builds == 1
    assert "cannot be used" in caplog.text and "rebuilding" in caplog.text
    assert torch.equal(again.train.inputs["audio"], reference)


def test_partial_build_is_never_used(tmp_path):
    path = build_dataset("test-counting", "small", 3, tmp_path)
    (path / "manifest.json").unlink()  # as if killed before the manifest was written
    assert verify_cache(path) == "no manifest (missing or partial build)"


def test_bad_names_sizes_seeds(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'nope'; known datasets: .*test-counting"):
        load_dataset("nope", "small", 0, tmp_path)
    with pytest.raises(DataError, match="unknown dataset size 'huge'"):
        load_dataset("test-counting", "huge", 0, tmp_path)
    with pytest.raises(DataError, match="seed must be non-negative"):
        load_dataset("test-counting", "small", -1, tmp_path)


def test_data_dir_resolution(tmp_path, monkeypatch):
    assert default_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("MMUNLEARN_DATA", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("MMUNLEARN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "mmunlearn"


def test_manifest_lists_every_file(tmp_path):
    path = build_dataset("test-counting", "small", 4, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{s}.{e}" for s in ("train", "val", "test") for e in ("safetensors", "json")} | {
        "meta.json"
    }
