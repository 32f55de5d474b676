"""The built-in ``av-digits`` set: digit images paired with spoken digits, built offline from a seed.

Images (uint8, 1 x 32 x 32, light digit on a dark background) are of two kinds:

- real handwritten digits from scikit-learn's bundled set (``load_digits``: 8 x 8, 0..16, upscaled
  smoothly). That set carries no writer ids, so every such image has the identity
  ``"handwritten-sklearn"`` and cannot be held out by writer; each source image is used at most once
  across all splits, so each sample still has its own instance;
- digits rendered with Pillow from the TrueType fonts that ship inside matplotlib (never system
  fonts, so every machine with the same matplotlib builds the same images), keeping the fonts whose
  digit code points map to real digit glyphs; identity = the font file's stem, e.g.
  ``"DejaVuSans-Bold"``. A seeded ~27% of the fonts of every family is held out for the test split.

Every image gets its own random stroke weight, affine jitter (rotation, scale, shear, translation),
brightness, blur, and pixel noise.

Audio (float32 log-mel, 40 x 64, one second at 22050 Hz) is the digit's English word spoken by eSpeak
NG (see `mmunlearn.data.audio`). Voices are distinct eSpeak voice variants, each with an English accent;
a seeded ~27% of them is held out for the test split. A bank of utterances is synthesised over several
(rate, pitch, intonation) settings per voice; each sample draws one and gets its own time shift, gain
and background noise (white or pink, random SNR). The val split shares the fonts and voices of train.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime import progress as show_progress
from . import audio
from .builder import DATASETS, SPLITS, BuiltData, DatasetBuilder
from .core import SplitData

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont

logger = logging.getLogger(__name__)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
HANDWRITTEN = "handwritten-sklearn"
IMAGE_SIZE = 32
N_MELS, N_FFT, HOP = 40, 512, 345
CLIP_SAMPLES = audio.SAMPLE_RATE  # one second
N_FRAMES = 1 + CLIP_SAMPLES // HOP  # 64
HOLDOUT_FRACTION = 0.27
HANDWRITTEN_FRACTION = 0.12
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")  # fmt: skip

F_MIN, F_MAX = 20.0, 8000.0
_CHUNK = 1024  # samples per batch of image / audio processing
_CANVAS = 64  # images are drawn at twice the output size, then averaged down (anti-aliasing)
_GLYPH = 40  # longest side of a digit on the canvas


@dataclass(frozen=True)
class _Recipe:
    """Split sizes and the size of the voice bank of one dataset size."""

    counts: dict[str, int]
    n_voices: int
    settings_per_voice: int


_RECIPES = {
    "small": _Recipe({"train": 600, "val": 150, "test": 300}, n_voices=24, settings_per_voice=1),
    "full": _Recipe({"train": 10_000, "val": 1_000, "test": 2_000}, n_voices=96, settings_per_voice=2),
}


@dataclass(frozen=True)
class ImageJitter:
    """Ranges of the per-image augmentation (uniform draws unless said otherwise)."""

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.8, 1.1)
    shear: float = 0.2
    shift_px: float = 3.0
    stroke_probs: tuple[float, float, float] = (0.2, 0.45, 0.35)  # thinner, as drawn, bolder
    background: tuple[float, float] = (0.0, 0.25)
    contrast: tuple[float, float] = (0.25, 0.75)  # ink brightness minus background brightness
    blur_sigma: tuple[float, float] = (0.0, 0.8)
    # contrast-to-noise ratio: contrast / std of pixel noise. Low enough that an image is not recognised
    # from its digit alone every time: unseen images of the training fonts reach about 84% image-only
    # accuracy while the training images are memorised (about 95%), so sample-level forgetting and
    # membership are measurable (version 1, with (1.5, 7.0) and contrast from 0.4, gave 99.2% vs 99.95%).
    cnr: tuple[float, float] = (0.6, 3.0)


@dataclass(frozen=True)
class AudioMix:
    """Ranges of the speech settings of the utterance bank and of the per-clip mix (uniform draws)."""

    level_db: tuple[float, float] = (-30.0, -12.0)  # speech RMS, dB re full scale
    snr_db: tuple[float, float] = (-5.0, 10.0)
    pink_prob: float = 0.5
    rate: tuple[int, int] = (150, 240)
    pitch: tuple[int, int] = (20, 80)
    pitch_range: tuple[int, int] = (20, 80)


@dataclass
class _Plan:
    """What each sample of one split is made of (all arrays have N rows, in the split's order).

    Attributes:
        labels: digit.
        font: index into `digit_fonts`, or -1 for a handwritten image.
        handwritten: index into scikit-learn's digits, or -1 for a rendered image.
        voice: voice name.
        take: which of the voice's bank utterances of that digit.
    """

    labels: np.ndarray
    font: np.ndarray
    handwritten: np.ndarray
    voice: list[str]
    take: np.ndarray


def _stream(seed: int, *key: str) -> np.random.Generator:
    """An independent random stream per purpose, so changing one part of the build leaves the rest."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in key)])


# -- fonts -----------------------------------------------------------------------------------------------


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _glyph_names_are_digits(path: Path) -> bool:
    """Whether the code points '0'..'9' map to glyphs named after digits ("zero", "oneoldstyle"...).

    Why: some math fonts put symbols at the digit code points (cmsy10 has a prime and an infinity
    there), which render as distinct, non-empty shapes that are not digits.
    """
    from matplotlib.ft2font import FT2Font

    font = FT2Font(str(path))
    cmap = font.get_charmap()
    codes = [ord(str(d)) for d in range(10)]
    return all(c in cmap for c in codes) and all(
        font.get_glyph_name(cmap[c]).startswith(word) for c, word in zip(codes, DIGIT_WORDS, strict=True)
    )


def _render_glyph(font: FreeTypeFont, digit: int) -> np.ndarray:
    """One digit, cropped to its ink and scaled so its longest side is `_GLYPH`, centred on the canvas."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (4 * _CANVAS, 4 * _CANVAS), 0)
    ImageDraw.Draw(big).text((2 * _CANVAS, 2 * _CANVAS), str(digit), font=font, fill=255, anchor="mm")
    box = big.getbbox()
    if box is None:
        return np.zeros((_CANVAS, _CANVAS), dtype=np.float32)
    glyph = big.crop(box)
    k = _GLYPH / max(glyph.size)
    w, h = max(1, round(glyph.width * k)), max(1, round(glyph.height * k))
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    canvas.paste(glyph.resize((w, h), Image.Resampling.LANCZOS), ((_CANVAS - w) // 2, (_CANVAS - h) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _render_font(path: Path) -> np.ndarray:
    """The ten digits of one font: float32 (10, 64, 64) in [0, 1]."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), 3 * _GLYPH)
    return np.stack([_render_glyph(font, d) for d in range(10)])


@functools.cache
def digit_fonts() -> tuple[tuple[str, str, np.ndarray], ...]:
    """The matplotlib fonts that have ten distinct, non-empty digit glyphs, with their renderings.

    Returns:
        ``(name, family, glyphs)`` per font, sorted by name: ``name`` is the file stem, ``family``
        groups styles of one design (the Computer Modern fonts form one family), ``glyphs`` is float32
        (10, 64, 64) in [0, 1].
    """
    from matplotlib.ft2font import FT2Font

    out = []
    for path in sorted(_font_dir().glob("*.ttf")):
        if not _glyph_names_are_digits(path):
            continue
        glyphs = _render_font(path)
        empty = (glyphs.reshape(10, -1).max(axis=1) < 0.5).any()
        distinct = len({g.tobytes() for g in glyphs}) == 10
        if empty or not distinct:
            continue
        family = FT2Font(str(path)).family_name
        family = "Computer Modern" if re.fullmatch(r"cm[a-z]+\d+", family) else family
        out.append((path.stem, family, glyphs))
    if len(out) < 4:
        raise RuntimeError(f"found only {len(out)} usable digit fonts in {_font_dir()}; need at least 4")
    return tuple(out)


def _hold_out(names: list[str], families: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Split identities into (seen, held out), holding out about `HOLDOUT_FRACTION` of every family.

    Why per family: holding out a whole family by chance would make one seed much harder than another.
    """
    held: list[str] = []
    for fam in sorted(set(families)):
        members = [n for n, f in zip(names, families, strict=True) if f == fam]
        k = max(1, round(HOLDOUT_FRACTION * len(members))) if len(members) > 1 else 0
        held += [members[i] for i in rng.permutation(len(members))[:k]]
    return sorted(set(names) - set(held)), sorted(held)


# -- images ----------------------------------------------------------------------------------------------


@functools.cache
def handwritten_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits (the data of ``sklearn.datasets.load_digits``).

    Read straight from the CSV file that ``load_digits`` reads, which avoids importing all of
    scikit-learn (seconds); falls back to ``load_digits`` if the file is not where expected.

    Returns:
        images float64 (1797, 8, 8) with values 0..16, labels int64 (1797,).
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0], "datasets", "data", "digits.csv.gz") if locations else None
    if path is not None and path.is_file():
        data = np.loadtxt(path, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def _handwritten_canvases(images8: np.ndarray) -> Tensor:
    """scikit-learn 8 x 8 digits (0..16) -> float (N, 64, 64): bicubic upscale to `_GLYPH`, centred."""
    # Scale each image to peak 1: the set's 0..16 counts leave some digits faint for no reason.
    peak = np.maximum(images8.max(axis=(1, 2), keepdims=True), 1.0)
    x = torch.from_numpy((images8 / peak).astype(np.float32)).unsqueeze(1)
    up = F.interpolate(x, size=(_GLYPH, _GLYPH), mode="bicubic", align_corners=False).clamp_(0, 1)
    pad = (_CANVAS - _GLYPH) // 2
    return F.pad(up, (pad, pad, pad, pad)).squeeze(1)


def _affine_theta(n: int, jit: ImageJitter, rng: np.random.Generator) -> Tensor:
    """Random affine maps for `F.affine_grid`, (n, 2, 3): output coordinates -> input coordinates."""
    rot = np.deg2rad(rng.uniform(-jit.rotation_deg, jit.rotation_deg, n))
    scale = rng.uniform(*jit.scale, n)
    shear = rng.uniform(-jit.shear, jit.shear, n)
    shift = rng.uniform(-1, 1, (n, 2)) * (2 * jit.shift_px / IMAGE_SIZE)  # normalised units
    cos, sin = np.cos(rot), np.sin(rot)
    rotm = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    shm = np.zeros((n, 2, 2))
    shm[:, 0, 0] = shm[:, 1, 1] = 1.0
    shm[:, 0, 1] = shear
    forward = rotm @ shm * scale[:, None, None]
    inv = np.linalg.inv(forward)
    theta = np.concatenate([inv, -(inv @ shift[:, :, None])], axis=2)
    return torch.from_numpy(theta).float()


def _stroke(ink: Tensor, choice: np.ndarray) -> Tensor:
    """Thin (0), keep (1) or thicken (2) strokes with a 3 x 3 min/max filter, per image."""
    x = ink.unsqueeze(1)
    thin = -F.max_pool2d(-x, 3, 1, 1)
    bold = F.max_pool2d(x, 3, 1, 1)
    pick = torch.from_numpy(choice).view(-1, 1, 1, 1)
    return torch.where(pick == 0, thin, torch.where(pick == 2, bold, x))


def _blur(img: Tensor, sigma: np.ndarray) -> Tensor:
    """Gaussian blur with a per-image sigma (0 = none) of images (N, 1, H, W), H == W.

    As ``K @ img @ K.T`` with a per-image Gaussian matrix ``K`` whose rows sum to 1 (so edges keep
    their brightness): a batched matrix product, far cheaper than a grouped convolution.
    """
    pos = torch.arange(img.shape[-1], dtype=torch.float64)
    s = torch.from_numpy(np.maximum(sigma, 1e-3)).view(-1, 1, 1)
    k = torch.exp(-0.5 * ((pos[:, None] - pos[None, :]) / s) ** 2)
    k = k / k.sum(-1, keepdim=True)
    out = torch.einsum("nij,njk,nlk->nil", k, img[:, 0].double(), k)
    return out.unsqueeze(1).float()


def _augment(ink: Tensor, soft: np.ndarray, jit: ImageJitter, rng: np.random.Generator) -> Tensor:
    """Ink canvases float (N, 64, 64) in [0, 1] -> augmented images uint8 (N, 1, 32, 32).

    Rows where ``soft`` is True (upscaled 8 x 8 handwriting, already blurry and thin) are neither
    thinned nor blurred further.
    """
    n = ink.shape[0]
    stroke = rng.choice(3, size=n, p=jit.stroke_probs)
    stroke[soft & (stroke == 0)] = 1
    x = _stroke(ink, stroke)
    grid = F.affine_grid(_affine_theta(n, jit, rng), [n, 1, _CANVAS, _CANVAS], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = F.avg_pool2d(x, _CANVAS // IMAGE_SIZE)
    bg = rng.uniform(*jit.background, n)[:, None, None, None]
    contrast = rng.uniform(*jit.contrast, n)[:, None, None, None]
    x = torch.from_numpy(bg).float() + torch.from_numpy(contrast).float() * x.clamp(0, 1)
    x = _blur(x, np.where(soft, 0.0, rng.uniform(*jit.blur_sigma, n)))
    std = contrast / rng.uniform(*jit.cnr, n)[:, None, None, None]
    x = x + torch.from_numpy(rng.standard_normal((n, 1, IMAGE_SIZE, IMAGE_SIZE)) * std).float()
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _split_visual(
    plan: _Plan, glyphs: np.ndarray, hand: np.ndarray, render: Callable[[Tensor, np.ndarray], Tensor], chunk: int
) -> Tensor:
    """The visual inputs of one split, built ``chunk`` samples at a time to bound memory: each chunk's ink
    canvases (font glyphs, or upscaled handwriting where ``soft``) go through ``render(ink, soft)``."""
    out = []
    for lo in range(0, len(plan.labels), chunk):
        sl = slice(lo, lo + chunk)
        font, label, src = plan.font[sl], plan.labels[sl], plan.handwritten[sl]
        ink = torch.from_numpy(glyphs[np.maximum(font, 0), label])
        is_hand = font < 0
        if is_hand.any():
            ink[torch.from_numpy(is_hand)] = _handwritten_canvases(hand[src[is_hand]])
        out.append(render(ink, is_hand))
    return torch.cat(out)


@dataclass(frozen=True)
class Sources:
    """What every split of an audio-visual digit set draws from (fonts, voices, utterances, handwriting).

    Attributes:
        names: font stems (`digit_fonts` order); glyphs: their (F, 10, 64, 64) ink canvases.
        fonts, voices: split -> the fonts / voices it uses (test holds out its own).
        bank: (voice, setting) -> utterances; hand_images: scikit-learn's digits; pool: their use per digit.
    """

    names: list[str]
    glyphs: np.ndarray
    fonts: dict[str, list[str]]
    voices: dict[str, list[str]]
    bank: dict[tuple[str, int], list[np.ndarray]]
    hand_images: np.ndarray
    pool: dict[int, list[int]]


def draw_sources(recipe: _Recipe, mix: AudioMix, seed: int, progress: bool) -> Sources:
    """The fonts and voices of each split (identities held out for test), the utterance bank and handwriting."""
    fonts = digit_fonts()
    names = [f[0] for f in fonts]
    seen_fonts, test_fonts = _hold_out(names, [f[1] for f in fonts], _stream(seed, "fonts"))
    voices, families = _voice_pool(recipe.n_voices, _stream(seed, "voices"))
    seen_voices, test_voices = _hold_out(voices, families, _stream(seed, "voice-holdout"))
    bank = _utterance_bank(voices, recipe.settings_per_voice, mix, _stream(seed, "bank"), progress)
    hand_images, hand_labels = handwritten_digits()
    return Sources(
        names, np.stack([f[2] for f in fonts]),
        {"train": seen_fonts, "val": seen_fonts, "test": test_fonts},
        {"train": seen_voices, "val": seen_voices, "test": test_voices},
        bank, hand_images, _handwritten_pool(hand_labels, _stream(seed, "handwritten")),
    )  # fmt: skip


def plan_split(src: Sources, recipe: _Recipe, split: str, seed: int) -> _Plan:
    """Which digit, font or handwritten image, voice and utterance each sample of ``split`` gets."""
    font_ids = [src.names.index(f) for f in src.fonts[split]]
    return _plan_split(recipe.counts[split], font_ids, src.pool, src.voices[split],
                       recipe.settings_per_voice, _stream(seed, "plan", split))  # fmt: skip


# -- audio -----------------------------------------------------------------------------------------------


def _is_klatt(variant: str) -> bool:
    """Whether a voice variant uses the Klatt synthesiser (its sound differs most from the others)."""
    path = audio.voice_variant_path(variant)
    return any(line.split()[:1] == ["klatt"] for line in path.read_text(errors="replace").splitlines())


def _voice_pool(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """``n`` voices with distinct variants, each with a random English accent; and their families."""
    # Plain names only: a voice name is also a group name, and one variant is called "Mr serious".
    variants = [v for v in audio.voice_variants() if re.fullmatch(r"[A-Za-z0-9]+", v)]
    pick = sorted(rng.choice(len(variants), size=min(n, len(variants)), replace=False))
    accents = rng.integers(0, len(ACCENTS), size=len(pick))
    voices = [f"{ACCENTS[a]}+{variants[i]}" for i, a in zip(pick, accents, strict=True)]
    families = ["klatt" if _is_klatt(variants[i]) else "formant" for i in pick]
    return voices, families


def _trim(wave: np.ndarray, rel: float = 0.02, margin: int = 220) -> np.ndarray:
    """Cut the silence around an utterance (keeping ``margin`` samples) and fit it in one clip."""
    loud = np.flatnonzero(np.abs(wave) > rel * np.abs(wave).max())
    if len(loud) == 0:
        raise RuntimeError("eSpeak NG returned a silent utterance")
    lo, hi = max(0, loud[0] - margin), min(len(wave), loud[-1] + margin)
    return wave[lo:hi][: CLIP_SAMPLES - 1].astype(np.float64)


def _utterance_bank(
    voices: list[str], per_voice: int, mix: AudioMix, rng: np.random.Generator, progress: bool
) -> dict[tuple[str, int], list[np.ndarray]]:
    """Each voice says every digit with ``per_voice`` random (rate, pitch, range) settings."""
    jobs = []
    for voice in voices:
        for _ in range(per_voice):
            settings = audio.SpeechSettings(
                voice,
                rate=int(rng.integers(mix.rate[0], mix.rate[1] + 1)),
                pitch=int(rng.integers(mix.pitch[0], mix.pitch[1] + 1)),
                pitch_range=int(rng.integers(mix.pitch_range[0], mix.pitch_range[1] + 1)),
            )
            jobs += [(voice, d, settings) for d in range(10)]
    bank: dict[tuple[str, int], list[np.ndarray]] = {}
    for voice, d, settings in show_progress(jobs, desc="av-digits speech", enabled=progress):
        bank.setdefault((voice, d), []).append(_trim(audio.synthesize(DIGIT_WORDS[d], settings)))
    return bank


def _pink(white: np.ndarray) -> np.ndarray:
    """Shape white noise (N, L) to a 1/f power spectrum."""
    spec = np.fft.rfft(white, axis=-1)
    f = np.arange(spec.shape[-1], dtype=np.float64)
    spec *= 1.0 / np.sqrt(np.maximum(f, 1.0))
    return np.fft.irfft(spec, n=white.shape[-1], axis=-1)


def _mix(utterances: list[np.ndarray], mix: AudioMix, rng: np.random.Generator) -> np.ndarray:
    """Place each utterance at a random time with a random level, and add noise at a random SNR.

    Returns:
        float64 (N, CLIP_SAMPLES) waveforms.
    """
    n = len(utterances)
    level = 10.0 ** (rng.uniform(*mix.level_db, n) / 20.0)
    snr = rng.uniform(*mix.snr_db, n)
    pink = rng.random(n) < mix.pink_prob
    out = np.zeros((n, CLIP_SAMPLES))
    for i, u in enumerate(utterances):
        start = int(rng.integers(0, CLIP_SAMPLES - len(u) + 1))
        out[i, start : start + len(u)] = u * (level[i] / np.sqrt(np.mean(u**2)))
    noise = rng.standard_normal((n, CLIP_SAMPLES))
    noise[pink] = _pink(noise[pink])
    noise /= np.sqrt(np.mean(noise**2, axis=1, keepdims=True))
    return out + noise * (level / 10.0 ** (snr / 20.0))[:, None]


def _split_audio(
    plan: _Plan, bank: dict[tuple[str, int], list[np.ndarray]], mix: AudioMix, rng: np.random.Generator
) -> Tensor:
    """The log-mels of one split, float32 (N, N_MELS, N_FRAMES), built in chunks."""
    out = []
    for lo in range(0, len(plan.labels), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        utts = [
            bank[(v, int(d))][int(k)] for v, d, k in zip(plan.voice[sl], plan.labels[sl], plan.take[sl], strict=True)
        ]
        wave = torch.from_numpy(_mix(utts, mix, rng))
        out.append(audio.log_mel(wave, audio.SAMPLE_RATE, N_FFT, HOP, N_MELS, F_MIN, F_MAX))
    return torch.cat(out)


# -- assembly --------------------------------------------------------------------------------------------


def _handwritten_pool(labels: np.ndarray, rng: np.random.Generator) -> dict[int, list[int]]:
    """scikit-learn digit indices per class, shuffled; splits consume them, so none is used twice."""
    return {d: [int(i) for i in rng.permutation(np.flatnonzero(labels == d))] for d in range(10)}


def _plan_split(
    n: int, fonts: list[int], pool: dict[int, list[int]], voices: list[str], takes: int, rng: np.random.Generator
) -> _Plan:
    """Balanced labels; the first `HANDWRITTEN_FRACTION` of each class handwritten, the rest rendered."""
    per_class = n // 10
    n_hand = round(HANDWRITTEN_FRACTION * per_class)
    labels = np.repeat(np.arange(10), per_class)
    font = np.asarray(fonts)[rng.integers(0, len(fonts), n)]
    hand = np.full(n, -1)
    for d in range(10):
        if len(pool[d]) < n_hand:
            raise RuntimeError(f"not enough scikit-learn handwritten digits of class {d} left")
        rows = np.flatnonzero(labels == d)[:n_hand]
        hand[rows], pool[d] = pool[d][:n_hand], pool[d][n_hand:]
        font[rows] = -1
    voice = rng.integers(0, len(voices), n)
    take = rng.integers(0, takes, n)
    order = rng.permutation(n)
    return _Plan(labels[order], font[order], hand[order], [voices[i] for i in voice[order]], take[order])


def _split_data(split: str, plan: _Plan, images: Tensor, sounds: Tensor, fonts: list[str]) -> SplitData:
    return SplitData(
        ids=[f"avd-{split}-{i:06d}" for i in range(len(plan.labels))],
        tensors={"image": images, "audio": sounds},
        labels=torch.from_numpy(plan.labels.astype(np.int64)),
        groups={
            "image_identity": [fonts[f] if f >= 0 else HANDWRITTEN for f in plan.font],
            "voice": list(plan.voice),
        },
    )


def _versions() -> dict[str, str]:
    out = {"espeak-ng": audio.espeak_version()}
    for pkg in ("espeakng-loader", "matplotlib", "scikit-learn", "Pillow", "numpy", "torch"):
        out[pkg] = importlib.metadata.version(pkg)
    return out


@DATASETS.register("av-digits")
class AVDigits(DatasetBuilder):
    """Audio-visual digits: a digit image and the spoken digit, label 0..9 (see the module docstring).

    Splits hold ``{"image": uint8 (N, 1, 32, 32), "audio": float32 (N, 40, 64)}``, int64 labels and the
    groups ``image_identity`` (font stem or ``"handwritten-sklearn"``) and ``voice`` (eSpeak voice).
    """

    name = "av-digits"
    modalities = ("image", "audio")
    num_classes = 10
    version = 2
    description = "digit images (handwritten + matplotlib fonts) paired with eSpeak NG spoken digits"

    def __init__(self, jitter: ImageJitter | None = None, mix: AudioMix | None = None) -> None:
        self.jitter = jitter or ImageJitter()
        self.mix = mix or AudioMix()

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        """Generate the dataset (see `DatasetBuilder.build`).

        Raises:
            ValueError: an unknown ``size`` or a negative ``seed``.
        """
        if size not in _RECIPES:
            raise ValueError(f"unknown av-digits size {size!r}; valid sizes: {', '.join(_RECIPES)}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        start = time.perf_counter()
        recipe = _RECIPES[size]
        src = draw_sources(recipe, self.mix, seed, progress)
        splits = {}
        for split in SPLITS:
            plan = plan_split(src, recipe, split, seed)
            rng = _stream(seed, "image", split)
            images = _split_visual(
                plan, src.glyphs, src.hand_images, functools.partial(_augment, jit=self.jitter, rng=rng), _CHUNK
            )
            sounds = _split_audio(plan, src.bank, self.mix, _stream(seed, "audio", split))
            splits[split] = _split_data(split, plan, images, sounds, src.names)
        meta = self._meta(src.fonts, src.voices)
        logger.info("built av-digits size=%s seed=%d in %.1f s", size, seed, time.perf_counter() - start)
        return BuiltData(splits=splits, meta=meta)

    def _meta(self, fonts: dict[str, list[str]], voices: dict[str, list[str]]) -> dict[str, object]:
        return {
            "fonts": fonts,
            "voices": voices,
            "handwritten_fraction": HANDWRITTEN_FRACTION,
            "handwritten_note": "scikit-learn's digits have no writer ids: handwritten images are in every "
            "split (each source image once), not held out by identity",
            "image": {"size": IMAGE_SIZE, "polarity": "light digit on dark background",
                      "jitter": dataclasses.asdict(self.jitter)},
            "audio": {"sample_rate": audio.SAMPLE_RATE, "clip_samples": CLIP_SAMPLES, "n_fft": N_FFT,
                      "hop": HOP, "n_mels": N_MELS, "f_min": F_MIN, "f_max": F_MAX, "log": "ln(mel + 1e-6)",
                      "mix": dataclasses.asdict(self.mix)},
            "versions": _versions(),
        }  # fmt: skip
