"""Tests of the built-in av-digits set (small size only)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mmunlearn.data.av_digits import HANDWRITTEN, N_FRAMES, N_MELS, AVDigits, digit_fonts
from mmunlearn.data.builder import DATASETS, SPLITS, BuiltData

SMALL = {"train": 600, "val": 150, "test": 300}


@pytest.fixture(scope="module")
def built() -> BuiltData:
    return AVDigits().build("small", seed=0)


def _digests(data: BuiltData) -> dict[str, str]:
    return {
        f"{split}/{name}": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
        for split, part in data.splits.items()
        for name, t in {**part.tensors, "labels": part.labels}.items()
    }


def test_registered() -> None:
    assert DATASETS.get("av-digits") is AVDigits
    assert AVDigits.modalities == ("image", "audio") and AVDigits.num_classes == 10


def test_shapes_dtypes_and_labels(built: BuiltData) -> None:
    assert set(built.splits) == set(SPLITS)
    for split, part in built.splits.items():
        n = SMALL[split]
        assert part.tensors["image"].shape == (n, 1, 32, 32) and part.tensors["image"].dtype == torch.uint8
        assert part.tensors["audio"].shape == (n, N_MELS, N_FRAMES) and part.tensors["audio"].dtype == torch.float32
        assert torch.isfinite(part.tensors["audio"]).all()
        assert part.labels.dtype == torch.int64 and part.labels.shape == (n,)
        assert int(part.labels.min()) == 0 and int(part.labels.max()) == 9
        assert all(len(v) == n for v in part.groups.values()) and set(part.groups) == {"image_identity", "voice"}
        assert len(part.ids) == n


def test_ids_unique_across_splits(built: BuiltData) -> None:
    ids = [i for part in built.splits.values() for i in part.ids]
    assert len(ids) == len(set(ids))
    assert built.splits["train"].ids[123] == "avd-train-000123"


def test_classes_balanced(built: BuiltData) -> None:
    for split, part in built.splits.items():
        assert part.labels.bincount(minlength=10).tolist() == [SMALL[split] // 10] * 10


def test_held_out_fonts_and_voices(built: BuiltData) -> None:
    def identities(split: str, kind: str) -> set[str]:
        return set(built.splits[split].groups[kind]) - {HANDWRITTEN}

    for kind in ("image_identity", "voice"):
        seen = identities("train", kind) | identities("val", kind)
        assert identities("test", kind) and not identities("test", kind) & seen
        assert identities("val", kind) <= identities("train", kind)
    assert set(built.meta["fonts"]["test"]).isdisjoint(built.meta["fonts"]["train"])  # type: ignore[index]
    assert set(built.meta["voices"]["test"]).isdisjoint(built.meta["voices"]["train"])  # type: ignore[index]
    for part in built.splits.values():  # both kinds of images in every split
        assert HANDWRITTEN in part.groups["image_identity"]


def test_meta_records_provenance(built: BuiltData) -> None:
    versions = built.meta["versions"]
    assert {"espeak-ng", "matplotlib", "scikit-learn"} <= set(versions)  # type: ignore[arg-type]


def test_images_show_light_digits_on_dark(built: BuiltData) -> None:
    img = built.splits["train"].tensors["image"].float()
    centre, border = img[:, :, 10:22, 10:22].mean(), img[:, :, :, :3].mean()
    assert centre > border + 10


def test_same_seed_same_bytes_other_seed_other_data(built: BuiltData) -> None:
    again = AVDigits().build("small", seed=0)
    assert _digests(again) == _digests(built)
    assert all(again.splits[s].groups == built.splits[s].groups for s in SPLITS)
    other = AVDigits().build("small", seed=1)
    assert not torch.equal(other.splits["train"].tensors["image"], built.splits["train"].tensors["image"])
    assert not torch.equal(other.splits["train"].tensors["audio"], built.splits["train"].tensors["audio"])


def test_unknown_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="small, full"):
        AVDigits().build("huge", seed=0)


def test_only_real_digit_fonts() -> None:
    names = {name for name, _, _ in digit_fonts()}
    assert {"DejaVuSans", "cmr10", "STIXGeneral"} <= names
    assert not names & {"cmsy10", "cmex10", "LastResortHE-Regular", "DejaVuSansDisplay", "STIXNonUni"}
