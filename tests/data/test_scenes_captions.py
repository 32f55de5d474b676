"""Tests of the ``scenes-captions`` builder (tiny split sizes patched in, so each test takes seconds)."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest
import torch

from mmunlearn.data import scenes_captions as sc
from mmunlearn.data import shapes_captions
from mmunlearn.data.builder import DATASETS, SPLITS, BuiltData
from mmunlearn.data.tokenizer import WordTokenizer

_PHRASE = re.compile(r"^an? (small|large) (plain|striped|dotted) (\w+) (\w+) at the ([a-z ]+)$")
_TINY = {"train": 60, "val": 20, "test": 30}


def _build(seed: int) -> BuiltData:
    """The "small" build with tiny split sizes patched in (the real sizes are checked separately)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sc.SPLIT_SIZES, "small", dict(_TINY))
        return sc.ScenesCaptions().build("small", seed=seed)


@pytest.fixture(scope="module")
def built() -> BuiltData:
    return _build(0)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _scenes(seed: int, n: int, unique: bool) -> list[sc.Scene]:
    return sc.sample_scenes(np.random.default_rng(seed), n, unique)


def test_registered_and_sizes_match_shapes_captions() -> None:
    assert DATASETS.get(sc.NAME) is sc.ScenesCaptions
    assert sc.ScenesCaptions.modalities == ("image", "text")
    assert sc.ScenesCaptions.num_classes is None
    assert sc.SPLIT_SIZES == shapes_captions.SPLIT_SIZES  # 200-way small test, 1,000-way full test


def test_deterministic(built: BuiltData) -> None:
    again = _build(0)
    for s in SPLITS:
        for m, t in built.splits[s].tensors.items():
            assert _digest(t) == _digest(again.splits[s].tensors[m]), (s, m)
        assert built.splits[s].captions == again.splits[s].captions
    assert built.vocab == again.vocab and built.meta == again.meta
    other = _build(1)
    assert _digest(other.splits["train"].tensors["image"]) != _digest(built.splits["train"].tensors["image"])


def test_shapes_dtypes_ranges(built: BuiltData) -> None:
    assert built.text_len is not None and built.vocab is not None
    for s, n in _TINY.items():
        split = built.splits[s]
        img, text = split.tensors["image"], split.tensors["text"]
        assert img.dtype == torch.uint8 and img.shape == (n, 3, 32, 32)
        assert text.dtype == torch.int64 and text.shape == (n, built.text_len)
        assert int(text.min()) >= 0 and int(text.max()) < len(built.vocab)
        assert len(split.ids) == len(split.captions or []) == len(split.groups["family"]) == n
        assert split.labels is None
        assert (img.float().flatten(1).std(1) > 20).all()  # every image is cluttered, none blank
    for key in ("name", "version", "size", "seed", "counts", "trigger_reserve", "versions"):
        assert key in built.meta


def test_ids_unique_and_test_captions_unique(built: BuiltData) -> None:
    ids = [i for s in SPLITS for i in built.splits[s].ids]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("scn-") for i in ids)
    test_caps = built.splits["test"].captions or []
    assert len(test_caps) == len(set(test_caps))
    unique = [x.caption() for x in _scenes(3, 400, unique=True)]
    assert len(unique) == len(set(unique))


def test_tokens_decode_to_caption_and_reserve(built: BuiltData) -> None:
    assert built.vocab is not None and built.text_len is not None
    tok = WordTokenizer(built.vocab, built.text_len)
    for s in SPLITS:
        split = built.splits[s]
        for row, cap in zip(split.tensors["text"], split.captions or [], strict=True):
            assert tok.decode(row) == cap
        assert tok.caption_budget(split.tensors["text"]) >= 8


def test_vocabulary_reuses_shapes_captions_words(built: BuiltData) -> None:
    assert built.vocab is not None
    words = set(built.vocab[2:])
    assert words <= set(sc.vocabulary_words())
    assert set(shapes_captions.COLORS) <= words and set(shapes_captions.SHAPES) <= words
    assert {"small", "large", "plain", "striped", "dotted", "left", "right", "top", "bottom", "centre"} <= words


def _parse(caption: str) -> list[tuple[str, str, str, str, int]]:
    """Naive reference parser: caption -> (size, texture, colour, shape, cell) per named object."""
    out = []
    for phrase in caption.split(" and "):
        m = _PHRASE.match(phrase)
        assert m is not None, phrase
        size, texture, color, shape, position = m.groups()
        out.append((size, texture, color, shape, sc.POSITIONS.index(position)))
    return out


def test_captions_name_only_drawn_objects() -> None:
    for scene in _scenes(0, 300, unique=False):
        drawn = {(o.size, o.texture, o.color, o.shape, o.cell) for o in scene.objects}
        named = _parse(scene.caption())
        assert sc.NAMED_PER_CAPTION[0] <= len(named) <= sc.NAMED_PER_CAPTION[1] == 3
        assert sc.OBJECTS_PER_SCENE[0] <= len(scene.objects) <= sc.OBJECTS_PER_SCENE[1]
        assert len(named) < len(scene.objects) or len(scene.objects) == 3  # some objects go unnamed
        assert set(named) <= drawn and len(set(named)) == len(named) == scene.named
        cells = [n[4] for n in named]
        assert cells == sorted(cells)  # canonical: reading order
        assert len({o.cell for o in scene.objects}) == len(scene.objects)  # one object per cell


def test_named_objects_are_visible_in_their_cells() -> None:
    """A plain named object's palette colour covers a good part of its cell in the rendered image."""
    rng = np.random.default_rng(5)
    palette = {c: np.array(v, dtype=np.float64) for c, v in shapes_captions.COLORS.items()}
    checked = 0
    for scene in _scenes(1, 80, unique=False):
        img = sc.render_scene(scene, rng).astype(np.float64)
        for obj in scene.named_objects():
            if obj.texture != "plain":
                continue
            row, col = divmod(obj.cell, 3)
            y0, x0 = round(row * 32 / 3), round(col * 32 / 3)
            cell = img[y0 : y0 + 10, x0 : x0 + 10]
            close = np.linalg.norm(cell - palette[obj.color], axis=-1) < 45
            assert close.sum() >= (4 if obj.size == "small" else 12), (obj, int(close.sum()))
            checked += 1
    assert checked > 40


def test_near_duplicate_changes_one_attribute_of_one_named_object() -> None:
    rng = np.random.default_rng(2)
    changed: set[str] = set()
    for k in range(300):
        scene = sc.fresh_scene(rng, k)
        dup = sc.near_duplicate(rng, scene)
        diffs = [(a, b) for a, b in zip(scene.objects, dup.objects, strict=True) if a != b]
        assert len(diffs) == 1 and dup.family == scene.family and dup.named == scene.named
        a, b = diffs[0]
        assert scene.objects.index(a) < scene.named  # a named object: the caption changes
        fields = [f for f in ("color", "shape", "size", "texture", "cell") if getattr(a, f) != getattr(b, f)]
        assert len(fields) == 1
        changed.add(fields[0])
        assert dup.caption() != scene.caption()
        assert len({o.cell for o in dup.objects}) == len(dup.objects)
    assert changed == {"color", "shape", "size", "texture", "cell"}


def test_near_duplicates_are_common() -> None:
    scenes = _scenes(4, 1_000, unique=True)
    families: dict[int, int] = {}
    for s in scenes:
        families[s.family] = families.get(s.family, 0) + 1
    in_shared = sum(n for n in families.values() if n > 1) / len(scenes)
    assert in_shared > 0.4  # most scenes have a near-duplicate in their split
    assert abs(len(families) / len(scenes) - (1 - sc.NEAR_DUPLICATE_RATE)) < 0.06


def test_texture_pattern_against_naive_loop() -> None:
    side = 24
    for texture in sc.TEXTURES:
        pattern = sc.texture_pattern(texture, side)[..., 0]
        for y in range(side):
            for x in range(side):
                u, v = x / sc.SUPERSAMPLE, y / sc.SUPERSAMPLE
                if texture == "plain":
                    dark = False
                elif texture == "striped":
                    dark = math.fmod((u + v) / 3.0, 1.0) < 0.5
                else:
                    dark = (math.fmod(u, 3.0) - 1.5) ** 2 + (math.fmod(v, 3.0) - 1.5) ** 2 < 0.9**2
                assert pattern[y, x] == (0.35 if dark else 1.0), (texture, x, y)
    with pytest.raises(ValueError, match="plain, striped, dotted"):
        sc.texture_pattern("checked", side)


def test_objects_stay_in_their_cells() -> None:
    rng = np.random.default_rng(0)
    for cell in range(9):
        row, col = divmod(cell, 3)
        for size in sc.SIZES.values():
            for _ in range(50):
                side = float(rng.uniform(*size))
                cx, cy = sc.object_centre(rng, cell, side)
                assert col * 32 / 3 <= cx - side / 2 and cx + side / 2 <= (col + 1) * 32 / 3
                assert row * 32 / 3 <= cy - side / 2 and cy + side / 2 <= (row + 1) * 32 / 3


def test_boxed_mask_matches_full_canvas_mask() -> None:
    """The object is drawn in a box only; drawing it over the whole canvas gives exactly the same coverage."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    k, full = sc.SUPERSAMPLE, 32 * sc.SUPERSAMPLE
    for _ in range(60):
        obj = sc.random_object(rng, int(rng.integers(9)))
        side = float(rng.uniform(*sc.SIZES[obj.size]))
        cx, cy = sc.object_centre(rng, obj.cell, side)
        x0, y0, x1, y1 = box = sc._object_box(cx, cy, side)
        naive = Image.new("L", (full, full), 0)
        poly = shapes_captions.shape_polygon(obj.shape, cx * k, cy * k, side * k)
        r = side * k / 2
        draw = ImageDraw.Draw(naive)
        if poly is None:
            draw.ellipse((cx * k - r, cy * k - r, cx * k + r, cy * k + r), fill=255)
        else:
            draw.polygon(poly, fill=255)
        expected = np.asarray(naive, dtype=np.float64) / 255.0
        boxed = np.zeros_like(expected)
        boxed[y0:y1, x0:x1] = sc._object_mask(obj, cx, cy, side, box)[..., 0]
        assert np.array_equal(boxed, expected), obj
        assert expected[:y0].sum() == expected[y1:].sum() == expected[:, :x0].sum() == expected[:, x1:].sum() == 0


def test_unknown_size() -> None:
    with pytest.raises(ValueError, match="small, full"):
        sc.ScenesCaptions().build("huge", seed=0)


def test_concepts_are_the_named_objects_colour_and_shape() -> None:
    from mmunlearn.data.concepts import CONCEPTS

    space = CONCEPTS[sc.NAME]
    for scene in _scenes(2, 50, unique=False):
        expected = tuple(f"{color} {shape}" for _, _, color, shape, _ in _parse(scene.caption()))
        assert space.parse(scene.caption()) == expected
    assert space.prompt("orange star") == "an orange star"
