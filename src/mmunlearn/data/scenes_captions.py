"""``scenes-captions``: cluttered scenes of several attributed objects, captions naming some of them.

The paper's regime (MEM, arXiv 2407.16307, trains on Flickr8K / Flickr30K / MS-COCO) is one where a dual
encoder trained from scratch learns slowly: many objects per image, captions that name only some of them
with attributes, and many near-duplicate pairs. This set reproduces that regime at 32x32:

- each scene holds 3-5 objects, each a colour and a shape of shapes-captions (the same words and palette,
  so a model pretrained there already knows them), a size (small / large), a texture (plain / striped /
  dotted) and a position (a cell of a 3x3 grid: top left ... bottom right), every object in its own cell;
- the background is cluttered: smooth random colour blotches, plus distractor strokes and blobs that no
  caption names;
- the caption names the first 2 or 3 objects of the scene, in reading order of their cells:
  ``"a large striped red circle at the top left and a small plain blue star at the centre"``; the other
  objects are drawn but never named;
- half of the scenes of a split (`NEAR_DUPLICATE_RATE`) are a copy of an earlier scene of the same split
  with one attribute (colour, shape, size, texture or position) of one *named* object changed, so the two
  captions differ by one attribute and the two images by one object.

Scenes are drawn with Pillow at 4x resolution and box-filtered down (deterministic anti-aliasing), then
get per-object colour and position jitter and a little pixel noise. Test captions are unique within the
split (one true caption per image for N-way retrieval).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw

from .builder import DATASETS, BuiltData, DatasetBuilder
from .captioned import IMAGE_SIZE, TRIGGER_RESERVE, base_meta, caption_splits, check_size, render_splits
from .shapes_captions import COLORS, SHAPES, shape_polygon

logger = logging.getLogger(__name__)

NAME = "scenes-captions"
SUPERSAMPLE = 4

SIZES: dict[str, tuple[float, float]] = {"small": (5.5, 6.5), "large": (8.5, 9.5)}
"""Object side range in pixels; chosen here so the two sizes never overlap and a large object fits its cell."""
TEXTURES = ("plain", "striped", "dotted")
POSITIONS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
"""Grid cells in reading order: cell k is row k // 3, column k % 3."""
ATTRIBUTES = ("color", "shape", "size", "texture", "position")
"""What a near-duplicate changes (one of them, of one named object)."""
OBJECTS_PER_SCENE = (3, 5)
"""Inclusive range of objects drawn per scene."""
NAMED_PER_CAPTION = (2, 3)
"""Inclusive range of objects a caption names."""
NEAR_DUPLICATE_RATE = 0.5
"""Share of scenes that copy an earlier scene of the split with one attribute of one named object changed."""
SPLIT_SIZES = {
    "small": {"train": 1_000, "val": 200, "test": 200},
    "full": {"train": 10_000, "val": 1_000, "test": 1_000},
}

_GRID = 3
_CELL = IMAGE_SIZE / _GRID
_POS_JITTER = 0.35  # share of a cell's free room an object's centre may move
_BLOTCHES = 4  # background colour blotches per side (upsampled smoothly)
_BG_RANGE = (25, 115)  # per-channel level of the blotches: darker than most object colours
_STROKES = (2, 4)  # distractor strokes per image, inclusive
_BLOBS = (1, 3)  # distractor blobs per image, inclusive
_DISTRACTOR_RANGE = (40, 200)  # per-channel level of the distractors
_TEXTURE_DARK = 0.35  # stripes and dots: the object's colour times this
_STRIPE_PERIOD = 3.0  # pixels (at 32x32) between two stripes
_DOT_PERIOD = 3.0  # pixels between two dots
_COLOR_JITTER = 12  # per channel, uniform
_NOISE_STD = 3.0  # pixel noise, uint8 units


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: the words that describe it and the grid cell (index into `POSITIONS`) it sits in."""

    color: str
    shape: str
    size: str
    texture: str
    cell: int

    def phrase(self) -> str:
        """``"a large striped red circle at the top left"``."""
        words = f"{self.size} {self.texture} {self.color} {self.shape}"
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words} at the {POSITIONS[self.cell]}"


@dataclass(frozen=True)
class Scene:
    """One scene: its objects (the first ``named`` are the ones the caption names) and its family.

    Attributes:
        objects: 3-5 objects, each in its own cell.
        named: how many of the first objects the caption names.
        family: index of the scene's first ancestor in the split (near-duplicates share it).
    """

    objects: tuple[SceneObject, ...]
    named: int
    family: int

    def named_objects(self) -> list[SceneObject]:
        """The objects the caption names, in reading order of their cells."""
        return sorted(self.objects[: self.named], key=lambda o: o.cell)

    def caption(self) -> str:
        """The canonical caption: the named objects' phrases in reading order, joined by ``"and"``."""
        return " and ".join(o.phrase() for o in self.named_objects())


def random_object(rng: np.random.Generator, cell: int) -> SceneObject:
    """An object with uniformly drawn words in ``cell``."""
    return SceneObject(
        color=list(COLORS)[int(rng.integers(len(COLORS)))],
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        size=list(SIZES)[int(rng.integers(len(SIZES)))],
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        cell=cell,
    )


def fresh_scene(rng: np.random.Generator, family: int) -> Scene:
    """A scene with uniformly drawn object count, cells, words and named count."""
    n = int(rng.integers(OBJECTS_PER_SCENE[0], OBJECTS_PER_SCENE[1] + 1))
    cells = rng.choice(len(POSITIONS), size=n, replace=False)
    named = int(rng.integers(NAMED_PER_CAPTION[0], NAMED_PER_CAPTION[1] + 1))
    return Scene(tuple(random_object(rng, int(c)) for c in cells), named, family)


def _other(rng: np.random.Generator, options: tuple[str, ...] | list[str], current: str) -> str:
    """A uniformly drawn option different from ``current``."""
    rest = [o for o in options if o != current]
    return rest[int(rng.integers(len(rest)))]


def near_duplicate(rng: np.random.Generator, scene: Scene) -> Scene:
    """``scene`` with one attribute of one named object changed (a position moves to a free cell).

    The caption changes by exactly that attribute; every other object, and the family, stay.
    """
    i = int(rng.integers(scene.named))
    obj = scene.objects[i]
    attribute = ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
    if attribute == "color":
        obj = replace(obj, color=_other(rng, list(COLORS), obj.color))
    elif attribute == "shape":
        obj = replace(obj, shape=_other(rng, SHAPES, obj.shape))
    elif attribute == "size":
        obj = replace(obj, size=_other(rng, list(SIZES), obj.size))
    elif attribute == "texture":
        obj = replace(obj, texture=_other(rng, TEXTURES, obj.texture))
    else:
        free = sorted(set(range(len(POSITIONS))) - {o.cell for o in scene.objects})
        obj = replace(obj, cell=free[int(rng.integers(len(free)))])
    objects = (*scene.objects[:i], obj, *scene.objects[i + 1 :])
    return replace(scene, objects=objects)


def sample_scenes(rng: np.random.Generator, n: int, unique: bool) -> list[Scene]:
    """Draw ``n`` scenes: fresh ones, and (at `NEAR_DUPLICATE_RATE`) near-duplicates of earlier ones.

    Args:
        rng: the random generator.
        n: number of scenes.
        unique: no caption twice (test splits: one true caption per image).
    """
    scenes: list[Scene] = []
    seen: set[str] = set()
    while len(scenes) < n:
        if scenes and rng.random() < NEAR_DUPLICATE_RATE:
            scene = near_duplicate(rng, scenes[int(rng.integers(len(scenes)))])
        else:
            scene = fresh_scene(rng, len(scenes))
        caption = scene.caption()
        if unique and caption in seen:
            continue
        seen.add(caption)
        scenes.append(scene)
    return scenes


def _background(rng: np.random.Generator) -> Image.Image:
    """Smooth random colour blotches at the supersampled resolution."""
    low = rng.integers(_BG_RANGE[0], _BG_RANGE[1] + 1, size=(_BLOTCHES, _BLOTCHES, 3)).astype(np.uint8)
    side = IMAGE_SIZE * SUPERSAMPLE
    return Image.fromarray(low, "RGB").resize((side, side), Image.Resampling.BICUBIC)


def _random_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(_DISTRACTOR_RANGE[0], _DISTRACTOR_RANGE[1] + 1, size=3))
    return (r, g, b)


def _draw_distractors(canvas: Image.Image, rng: np.random.Generator) -> None:
    """Strokes (lines 1-2 px wide) and blobs (small ellipses) that no caption names."""
    draw = ImageDraw.Draw(canvas)
    k = SUPERSAMPLE
    for _ in range(int(rng.integers(_STROKES[0], _STROKES[1] + 1))):
        x0, y0, x1, y1 = (float(v) * k for v in rng.uniform(0, IMAGE_SIZE, size=4))
        draw.line((x0, y0, x1, y1), fill=_random_rgb(rng), width=int(rng.integers(1, 3)) * k)
    for _ in range(int(rng.integers(_BLOBS[0], _BLOBS[1] + 1))):
        cx, cy = (float(v) * k for v in rng.uniform(0, IMAGE_SIZE, size=2))
        rx, ry = (float(v) * k for v in rng.uniform(1.0, 2.5, size=2))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_random_rgb(rng))


@functools.cache
def texture_pattern(texture: str, side: int) -> np.ndarray:
    """Per-pixel brightness factor of ``texture`` over a ``side`` x ``side`` supersampled canvas.

    Cached (a pure function of its arguments, drawn for every object); the array is read-only.

    Returns:
        float (side, side, 1): 1 where the object shows its colour, `_TEXTURE_DARK` on stripes / dots.
    """
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) / SUPERSAMPLE
    if texture == "plain":
        dark = np.zeros((side, side), dtype=bool)
    elif texture == "striped":
        dark = ((xs + ys) / _STRIPE_PERIOD) % 1.0 < 0.5  # diagonal stripes, half dark
    elif texture == "dotted":
        dx, dy = (xs % _DOT_PERIOD) - _DOT_PERIOD / 2, (ys % _DOT_PERIOD) - _DOT_PERIOD / 2
        dark = dx**2 + dy**2 < (_DOT_PERIOD * 0.3) ** 2
    else:
        raise ValueError(f"unknown texture {texture!r}; known textures: {', '.join(TEXTURES)}")
    pattern = np.where(dark, _TEXTURE_DARK, 1.0)[..., None]
    pattern.flags.writeable = False
    return pattern


def object_centre(rng: np.random.Generator, cell: int, side: float) -> tuple[float, float]:
    """A jittered centre inside grid ``cell`` (pixels of the 32x32 image) for an object of ``side``."""
    row, col = divmod(cell, _GRID)
    room = max(_CELL - side, 0.0) / 2 * _POS_JITTER
    jx, jy = rng.uniform(-room, room, size=2)
    return (col + 0.5) * _CELL + float(jx), (row + 0.5) * _CELL + float(jy)


def _object_box(cx: float, cy: float, side: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a supersampled pixel box that holds the whole shape (a star pokes out of its side)."""
    k, half = SUPERSAMPLE, side * 0.6 + 1.0
    limit = IMAGE_SIZE * k
    x0, y0 = (max(int(np.floor((c - half) * k)), 0) for c in (cx, cy))
    x1, y1 = (min(int(np.ceil((c + half) * k)), limit) for c in (cx, cy))
    return x0, y0, x1, y1


def _object_mask(obj: SceneObject, cx: float, cy: float, side: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """float (h, w, 1) coverage of the object's shape over ``box`` of the supersampled canvas."""
    k = SUPERSAMPLE
    x0, y0, x1, y1 = box
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(mask)
    px, py, ps = cx * k - x0, cy * k - y0, side * k
    poly = shape_polygon(obj.shape, px, py, ps)
    if poly is None:
        draw.ellipse((px - ps / 2, py - ps / 2, px + ps / 2, py + ps / 2), fill=255)
    else:
        draw.polygon(poly, fill=255)
    return np.asarray(mask, dtype=np.float64)[..., None] / 255.0


def render_scene(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw one jittered, noisy instance of ``scene``: background, distractors, then the objects.

    Returns:
        uint8 (32, 32, 3) RGB image.
    """
    canvas_img = _background(rng)
    _draw_distractors(canvas_img, rng)
    canvas = np.array(canvas_img, dtype=np.float64)  # a writable copy
    side_px = IMAGE_SIZE * SUPERSAMPLE
    for obj in scene.objects:
        lo, hi = SIZES[obj.size]
        side = float(rng.uniform(lo, hi))
        cx, cy = object_centre(rng, obj.cell, side)
        base = np.array(COLORS[obj.color], dtype=np.float64)
        rgb = np.clip(base + rng.integers(-_COLOR_JITTER, _COLOR_JITTER + 1, size=3), 0, 255)
        x0, y0, x1, y1 = box = _object_box(cx, cy, side)
        mask = _object_mask(obj, cx, cy, side, box)
        shade = texture_pattern(obj.texture, side_px)[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1.0 - mask) + rgb * shade * mask
    small = canvas.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))  # box filter
    noisy = small + rng.normal(0.0, _NOISE_STD, size=small.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def vocabulary_words() -> list[str]:
    """Every word a caption can use, sorted (articles, "and", "at", "the" included)."""
    words = {"a", "an", "and", "at", "the", *COLORS, *SHAPES, *SIZES, *TEXTURES}
    words |= {w for p in POSITIONS for w in p.split()}
    return sorted(words)


@DATASETS.register(NAME)
class ScenesCaptions(DatasetBuilder):
    """Builder of ``scenes-captions`` (see the module docstring)."""

    name: ClassVar[str] = NAME
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    num_classes: ClassVar[int | None] = None
    version: ClassVar[int] = 1
    description: ClassVar[str] = "cluttered scenes of 3-5 attributed shapes, captions naming 2-3, many near-duplicates"

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        """Generate the dataset.

        Args:
            size: ``"small"`` (train 1,000 / val 200 / test 200) or ``"full"`` (10,000 / 1,000 / 1,000).
            seed: non-negative seed; the same (size, seed) gives bit-identical tensors.
            progress: show a tqdm bar.

        Returns:
            `BuiltData` whose splits hold ``"image"``: uint8 (N, 3, 32, 32) and ``"text"``: int64 (N, L).

        Raises:
            ValueError: unknown ``size``.
        """
        counts = check_size(NAME, SPLIT_SIZES, size)
        drawn, images = render_splits(NAME, counts, seed, sample_scenes, render_scene, progress)
        splits, tokenizer = caption_splits(
            "scn",
            drawn,
            images,
            lambda sc: sc.caption(),
            lambda scs: {
                "objects": [str(len(sc.objects)) for sc in scs],
                "family": [f"family-{sc.family:06d}" for sc in scs],
            },
        )
        logger.info("built %s/%s (seed %d): %s", NAME, size, seed, counts)
        meta: dict[str, object] = {
            **base_meta(NAME, self.version, size, seed, counts),
            "colors": {c: list(v) for c, v in COLORS.items()},
            "shapes": list(SHAPES),
            "sizes": {s: list(r) for s, r in SIZES.items()},
            "textures": list(TEXTURES),
            "positions": list(POSITIONS),
            "objects_per_scene": list(OBJECTS_PER_SCENE),
            "named_per_caption": list(NAMED_PER_CAPTION),
            "near_duplicate_rate": NEAR_DUPLICATE_RATE,
            "trigger_reserve": TRIGGER_RESERVE,
            "versions": {"numpy": np.__version__, "pillow": PIL.__version__, "torch": torch.__version__},
        }
        return BuiltData(splits=splits, vocab=tokenizer.vocab, text_len=tokenizer.max_len, meta=meta)
