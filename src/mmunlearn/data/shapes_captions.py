"""``shapes-captions``: two coloured shapes with a spatial relation, and their one true caption.

Each 32x32 RGB image shows two objects (a colour and a shape each) on a plain dark background, placed
so that one relation holds unambiguously: the objects are clearly separated along the relation axis and
roughly aligned on the other. The caption is canonical, so every image has exactly one true caption:
``"a red circle left of a blue square"`` (the first object is the left one) or
``"a green triangle above a yellow star"`` (the first object is the top one).

Scenes are drawn with Pillow at 4x resolution and box-filtered down (deterministic anti-aliasing), then
get per-image position, size and colour jitter and a little pixel noise, so every image is its own
instance. Test captions are unique within the split (one true caption per image for N-way retrieval).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw

from .builder import DATASETS, BuiltData, DatasetBuilder
from .captioned import IMAGE_SIZE, TRIGGER_RESERVE, base_meta, caption_splits, check_size, render_splits

logger = logging.getLogger(__name__)

NAME = "shapes-captions"
SUPERSAMPLE = 4

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 30),
    "green": (40, 180, 40),
    "cyan": (30, 210, 230),
    "blue": (40, 70, 245),
    "purple": (165, 50, 215),
    "white": (245, 245, 245),
}
"""Well-separated hues (plus white) that stay unambiguous after jitter and noise."""
SHAPES = ("circle", "square", "triangle", "star", "cross")
RELATIONS = ("left of", "above")
SPLIT_SIZES = {
    "small": {"train": 1_000, "val": 200, "test": 200},
    "full": {"train": 10_000, "val": 1_000, "test": 1_000},
}

_MIN_SIZE, _MAX_SIZE = 10.0, 13.0  # object side in pixels: clearly visible, two fit side by side
_MARGIN = 1.5  # keep objects off the image border
_MIN_GAP = 2.0  # pixels between the two objects along the relation axis
_ALIGN_JITTER = 1.5  # per-object offset on the other axis; small, so the relation stays clear
_BG_RANGE = (45, 75)  # grey level of the plain background
_COLOR_JITTER = 12  # per channel, uniform
_NOISE_STD = 3.0  # pixel noise, uint8 units


@dataclass(frozen=True)
class Scene:
    """One scene: two objects and their relation; object 0 is the left/top one (mentioned first)."""

    colors: tuple[str, str]
    shapes: tuple[str, str]
    relation: str

    def caption(self) -> str:
        """The canonical caption, e.g. ``"a red circle left of a blue square"``."""
        first, second = (_with_article(f"{c} {s}") for c, s in zip(self.colors, self.shapes, strict=True))
        return f"{first} {self.relation} {second}"


def _with_article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def all_scenes() -> list[Scene]:
    """Every distinct scene: ordered pairs of distinct (colour, shape) objects times the relations.

    Returns:
        8 colours x 5 shapes = 40 objects; 40 * 39 ordered pairs * 2 relations = 3,120 scenes, in a
        fixed order.
    """
    objects = [(c, s) for c in COLORS for s in SHAPES]
    return [Scene((a[0], b[0]), (a[1], b[1]), rel) for rel in RELATIONS for a in objects for b in objects if a != b]


def shape_polygon(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]] | None:
    """The outline of ``shape`` centred at (cx, cy) within a ``side`` x ``side`` box.

    Returns:
        Polygon vertices, or None for a circle (drawn as an ellipse).
    """
    r = side / 2
    if shape == "circle":
        return None
    if shape == "square":
        r *= 0.9  # a full-box square looks bigger than the other shapes
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5  # first point straight up
        radii = np.where(np.arange(10) % 2 == 0, r * 1.08, r * 0.45)
        ys = cy - radii * np.sin(angles) + r * 0.08  # a star's visual centre sits below its box centre
        return [(float(x), float(y)) for x, y in zip(cx + radii * np.cos(angles), ys, strict=True)]
    if shape == "cross":
        t = r * 0.38  # half the arm thickness
        return [
            (cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
            (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
            (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")


def place_pair(rng: np.random.Generator, sides: tuple[float, float], relation: str) -> np.ndarray:
    """Centres of two objects such that object 0 is clearly left of / above object 1.

    Args:
        rng: the random generator.
        sides: the two objects' box sides in pixels.
        relation: ``"left of"`` or ``"above"``.

    Returns:
        float (2, 2) array, row i = (x, y) of object i, in pixels of the 32x32 image.
    """
    s0, s1 = sides
    # Along the relation axis: object 0 near the start, object 1 near the end, never overlapping.
    free = max(IMAGE_SIZE - 2 * _MARGIN - s0 - s1 - _MIN_GAP, 0.0)
    j0, j1 = rng.uniform(0.0, free / 2, size=2)
    along = (_MARGIN + s0 / 2 + j0, IMAGE_SIZE - _MARGIN - s1 / 2 - j1)
    # Across it: a shared centre line plus a small per-object offset, so the objects stay aligned.
    base = IMAGE_SIZE / 2 + rng.uniform(-4.0, 4.0)
    offsets = rng.uniform(-_ALIGN_JITTER, _ALIGN_JITTER, size=2)
    across = [
        float(np.clip(base + o, _MARGIN + s / 2, IMAGE_SIZE - _MARGIN - s / 2))
        for o, s in zip(offsets, sides, strict=True)
    ]
    if relation == "left of":
        return np.array([[along[0], across[0]], [along[1], across[1]]])
    if relation == "above":
        return np.array([[across[0], along[0]], [across[1], along[1]]])
    raise ValueError(f"unknown relation {relation!r}; known relations: {', '.join(RELATIONS)}")


def render_scene(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw one jittered, noisy instance of ``scene``.

    Returns:
        uint8 (32, 32, 3) RGB image.
    """
    sides = (float(rng.uniform(_MIN_SIZE, _MAX_SIZE)), float(rng.uniform(_MIN_SIZE, _MAX_SIZE)))
    centres = place_pair(rng, sides, scene.relation)
    bg = int(rng.integers(_BG_RANGE[0], _BG_RANGE[1] + 1))
    k = SUPERSAMPLE
    canvas = Image.new("RGB", (IMAGE_SIZE * k, IMAGE_SIZE * k), (bg, bg, bg))
    draw = ImageDraw.Draw(canvas)
    for i in range(2):
        base = np.array(COLORS[scene.colors[i]])
        rgb = np.clip(base + rng.integers(-_COLOR_JITTER, _COLOR_JITTER + 1, size=3), 0, 255)
        fill = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
        cx, cy, side = centres[i, 0] * k, centres[i, 1] * k, sides[i] * k
        poly = shape_polygon(scene.shapes[i], cx, cy, side)
        if poly is None:
            draw.ellipse((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), fill=fill)
        else:
            draw.polygon(poly, fill=fill)
    img = np.asarray(canvas.reduce(k), dtype=np.float64)  # box filter: exact, deterministic anti-aliasing
    noisy = img + rng.normal(0.0, _NOISE_STD, size=img.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def sample_scenes(rng: np.random.Generator, scenes: list[Scene], n: int, unique: bool) -> list[Scene]:
    """Draw ``n`` scenes uniformly; without replacement when ``unique`` (test splits)."""
    if unique and n > len(scenes):
        raise ValueError(f"cannot draw {n} unique scenes from {len(scenes)} distinct ones")
    picks = rng.choice(len(scenes), size=n, replace=not unique)
    return [scenes[int(i)] for i in picks]


@DATASETS.register(NAME)
class ShapesCaptions(DatasetBuilder):
    """Builder of ``shapes-captions`` (see the module docstring)."""

    name: ClassVar[str] = NAME
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    num_classes: ClassVar[int | None] = None
    version: ClassVar[int] = 1
    description: ClassVar[str] = "two coloured shapes with a relation (left of / above) and their one caption"

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
        scenes = all_scenes()
        drawn, images = render_splits(
            NAME, counts, seed, lambda rng, n, unique: sample_scenes(rng, scenes, n, unique), render_scene, progress
        )
        splits, tokenizer = caption_splits(
            "shp", drawn, images, lambda sc: sc.caption(), lambda sc: {"relation": [x.relation for x in sc]}
        )
        logger.info("built %s/%s (seed %d): %s", NAME, size, seed, counts)
        meta: dict[str, object] = {
            **base_meta(NAME, self.version, size, seed, counts),
            "colors": {c: list(v) for c, v in COLORS.items()},
            "shapes": list(SHAPES),
            "relations": list(RELATIONS),
            "distinct_captions": len(scenes),
            "trigger_reserve": TRIGGER_RESERVE,
            "versions": {"numpy": np.__version__, "pillow": PIL.__version__, "torch": torch.__version__},
        }
        return BuiltData(splits=splits, vocab=tokenizer.vocab, text_len=tokenizer.max_len, meta=meta)
