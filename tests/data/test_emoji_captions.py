"""Tests of the ``emoji-captions`` builder (small size only)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from mmunlearn.data.builder import DATASETS, SPLITS, BuiltData
from mmunlearn.data.emoji_captions import (
    NAME,
    POOL_SIZE,
    RELATIONS,
    EmojiCaptions,
    Glyph,
    PatchCache,
    Scene,
    candidate_glyphs,
    caption_name,
    distinctive_pool,
    font_path,
    render_scene,
)
from mmunlearn.data.tokenizer import WordTokenizer


@pytest.fixture(scope="module")
def built() -> BuiltData:
    return EmojiCaptions().build("small", seed=0)


@pytest.fixture(scope="module")
def candidates() -> list[Glyph]:
    return candidate_glyphs(ImageFont.truetype(font_path(), 64, layout_engine=ImageFont.Layout.BASIC))


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def test_registered() -> None:
    assert DATASETS.get(NAME) is EmojiCaptions
    assert EmojiCaptions.modalities == ("image", "text")
    assert EmojiCaptions.num_classes is None


def test_deterministic(built: BuiltData) -> None:
    again = EmojiCaptions().build("small", seed=0)
    for s in SPLITS:
        for m, t in built.splits[s].tensors.items():
            assert _digest(t) == _digest(again.splits[s].tensors[m]), (s, m)
        assert built.splits[s].captions == again.splits[s].captions
    assert built.meta["pool"] == again.meta["pool"]
    other = EmojiCaptions().build("small", seed=1)
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
        assert len(split.ids) == len(split.captions or []) == len(split.groups["emoji"]) == n
        assert split.labels is None
        assert img.float().mean() > 150  # white background
        assert (img.float().flatten(1).std(1) > 10).all()  # every image shows something


def test_ids_unique_and_test_captions_unique(built: BuiltData) -> None:
    ids = [i for s in SPLITS for i in built.splits[s].ids]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("emo-") for i in ids)
    test_caps = built.splits["test"].captions or []
    assert len(test_caps) == len(set(test_caps))


def test_tokens_decode_to_caption_and_reserve(built: BuiltData) -> None:
    assert built.vocab is not None and built.text_len is not None
    tok = WordTokenizer(built.vocab, built.text_len)
    for s in SPLITS:
        split = built.splits[s]
        for row, cap in zip(split.tensors["text"][:50], split.captions or [], strict=False):
            assert tok.decode(row) == cap
        assert tok.caption_budget(split.tensors["text"]) >= 8


def test_groups_match_captions(built: BuiltData) -> None:
    names = {p["name"] for p in built.meta["pool"]}  # type: ignore[attr-defined]
    for s in SPLITS:
        split = built.splits[s]
        for cap, first, rel in zip(split.captions or [], split.groups["emoji"], split.groups["relation"], strict=True):
            if rel == "none":
                assert cap == first and cap in names
            else:
                assert rel in RELATIONS
                a, b = cap.split(f" {rel} ")
                assert a == first and a in names and b in names and a != b
    rels = set(built.splits["train"].groups["relation"])
    assert rels == {"none", *RELATIONS}


def test_caption_name() -> None:
    assert caption_name(":grinning_face:") == "grinning face"
    assert caption_name(":man’s_shoe:") == "mans shoe"
    assert caption_name(":piñata:") == "pinata"
    assert caption_name(":AB_button_(blood_type):") == "ab button blood type"


def test_glyphs_non_empty_and_not_notdef(candidates: list[Glyph]) -> None:
    font = ImageFont.truetype(font_path(), 64, layout_engine=ImageFont.Layout.BASIC)
    canvas = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((48, 48), "\u0378", font=font, embedded_color=True, anchor="mm")
    notdef = np.asarray(canvas.crop(canvas.getbbox()))  # the box the font draws for a missing glyph
    assert len(candidates) > 1000
    assert len({g.name for g in candidates}) == len(candidates)
    for g in candidates:
        img = np.asarray(g.image)
        assert g.image.width == g.image.height and (img[..., 3] > 0).sum() > 20, g.name
        assert len(g.char) == 1
        assert img.shape != notdef.shape or not np.array_equal(img, notdef), g.name


def test_pool_distinct(candidates: list[Glyph]) -> None:
    pool = distinctive_pool(candidates, POOL_SIZE)
    assert len(pool) == POOL_SIZE and len({g.char for g in pool}) == POOL_SIZE
    assert [ord(g.char) for g in pool] == sorted(ord(g.char) for g in pool)
    names = {g.name for g in pool}
    assert not {"yellow circle", "full moon"} <= names  # near-identical artwork is never both pooled


def test_layout_canonical() -> None:
    """Render pairs of solid-colour stand-in glyphs: the first one must come out left / on top."""
    red = Glyph("r", "red", Image.new("RGBA", (40, 40), (255, 0, 0, 255)))
    blue = Glyph("b", "blue", Image.new("RGBA", (40, 40), (0, 0, 255, 255)))
    patches = PatchCache([red, blue])
    rng = np.random.default_rng(0)
    for k in range(100):
        rel = RELATIONS[k % 2]
        img = render_scene(Scene(0, 1, rel), patches, rng).astype(np.float32)
        ys, xs = np.mgrid[0:32, 0:32]
        is_red = (img[..., 0] > 200) & (img[..., 2] < 60)
        is_blue = (img[..., 2] > 200) & (img[..., 0] < 60)
        p0 = np.array([xs[is_red].mean(), ys[is_red].mean()])
        p1 = np.array([xs[is_blue].mean(), ys[is_blue].mean()])
        axis = 0 if rel == "left of" else 1
        assert p1[axis] - p0[axis] >= 13, (rel, p0, p1)
        assert abs(p1[1 - axis] - p0[1 - axis]) <= 3, (rel, p0, p1)
        assert not np.any(is_red & is_blue)


def test_unknown_size() -> None:
    with pytest.raises(ValueError, match="small, full"):
        EmojiCaptions().build("tiny", seed=0)
