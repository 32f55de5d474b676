"""Tests of the ``shapes-captions`` builder (small size only)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

from mmunlearn.data.builder import DATASETS, SPLITS, BuiltData
from mmunlearn.data.shapes_captions import COLORS, NAME, SHAPES, ShapesCaptions, all_scenes
from mmunlearn.data.tokenizer import WordTokenizer

_CAPTION = re.compile(r"^an? (\w+) (\w+) (left of|above) an? (\w+) (\w+)$")


@pytest.fixture(scope="module")
def built() -> BuiltData:
    return ShapesCaptions().build("small", seed=0)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def test_registered() -> None:
    assert DATASETS.get(NAME) is ShapesCaptions
    assert ShapesCaptions.modalities == ("image", "text")
    assert ShapesCaptions.num_classes is None


def test_deterministic(built: BuiltData) -> None:
    again = ShapesCaptions().build("small", seed=0)
    for s in SPLITS:
        for m, t in built.splits[s].tensors.items():
            assert _digest(t) == _digest(again.splits[s].tensors[m]), (s, m)
        assert built.splits[s].captions == again.splits[s].captions
    other = ShapesCaptions().build("small", seed=1)
    assert _digest(other.splits["train"].tensors["image"]) != _digest(built.splits["train"].tensors["image"])


def test_shapes_dtypes_ranges(built: BuiltData) -> None:
    expected = {"train": 1_000, "val": 200, "test": 200}
    assert built.text_len is not None and built.vocab is not None
    for s, n in expected.items():
        split = built.splits[s]
        img, text = split.tensors["image"], split.tensors["text"]
        assert img.dtype == torch.uint8 and img.shape == (n, 3, 32, 32)
        assert text.dtype == torch.int64 and text.shape == (n, built.text_len)
        assert int(text.min()) >= 0 and int(text.max()) < len(built.vocab)
        assert len(split.ids) == len(split.captions or []) == len(split.groups["relation"]) == n
        assert split.labels is None
        assert img.float().std() > 20  # not blank


def test_ids_unique_and_test_captions_unique(built: BuiltData) -> None:
    ids = [i for s in SPLITS for i in built.splits[s].ids]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("shp-") for i in ids)
    test_caps = built.splits["test"].captions or []
    assert len(test_caps) == len(set(test_caps))


def test_distinct_scene_count() -> None:
    scenes = all_scenes()
    assert len(scenes) == 40 * 39 * 2 == len({sc.caption() for sc in scenes})


def test_tokens_decode_to_caption_and_reserve(built: BuiltData) -> None:
    assert built.vocab is not None and built.text_len is not None
    tok = WordTokenizer(built.vocab, built.text_len)
    for s in SPLITS:
        split = built.splits[s]
        for row, cap in zip(split.tensors["text"][:50], split.captions or [], strict=False):
            assert tok.decode(row) == cap
        assert tok.caption_budget(split.tensors["text"]) >= 8


def _centroid(img: np.ndarray, color: str) -> np.ndarray | None:
    """(x, y) centroid of the pixels nearest to palette colour ``color`` (None if there are none)."""
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    px = img.reshape(-1, 3).astype(np.float32)
    dist = np.linalg.norm(px[:, None, :] - palette[None], axis=-1)
    nearest = dist.argmin(1)
    mask = (nearest == list(COLORS).index(color)) & (dist.min(1) < 50)
    if mask.sum() < 10:
        return None
    ys, xs = np.divmod(np.flatnonzero(mask), img.shape[1])
    return np.array([xs.mean(), ys.mean()])


def test_captions_canonical(built: BuiltData) -> None:
    split = built.splits["test"]
    checked = 0
    for img_t, cap, rel in zip(split.tensors["image"], split.captions or [], split.groups["relation"], strict=True):
        m = _CAPTION.match(cap)
        assert m is not None, cap
        c0, s0, relation, c1, s1 = m.groups()
        assert relation == rel and {s0, s1} <= set(SHAPES) and {c0, c1} <= set(COLORS)
        assert (c0, s0) != (c1, s1)
        if c0 == c1:
            continue  # same colour: the centroid cannot tell the two objects apart
        img = img_t.permute(1, 2, 0).numpy()
        p0, p1 = _centroid(img, c0), _centroid(img, c1)
        assert p0 is not None and p1 is not None, cap
        axis = 0 if relation == "left of" else 1
        assert p1[axis] - p0[axis] > 8, (cap, p0, p1)  # clearly separated along the relation axis
        assert abs(p1[1 - axis] - p0[1 - axis]) < 5, (cap, p0, p1)  # roughly aligned across it
        checked += 1
    assert checked > 150


def test_unknown_size() -> None:
    with pytest.raises(ValueError, match="small, full"):
        ShapesCaptions().build("huge", seed=0)
