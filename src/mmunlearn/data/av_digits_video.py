"""The built-in ``av-digits-video`` set: short clips of a digit drifting across the frame, with the spoken digit.

The video counterpart of `mmunlearn.data.av_digits`, built from the same parts: each sample's digit is a
printed digit rendered from one of matplotlib's fonts or one of scikit-learn's handwritten digits, with the
same kinds of per-sample augmentation (stroke weight, rotation, scale, shear, brightness, blur; a smaller
shift and less pixel noise, see `VIDEO_JITTER`), and its audio is the digit's word spoken by an eSpeak NG
voice, mixed the same way. The identity groups are those of av-digits:
``image_identity`` (font stem, or ``"handwritten-sklearn"``) and ``voice``; a seeded ~27% of the fonts and
voices is held out for the test split.

What is new is motion: a clip has ``frames`` frames (8 by default) in which the digit drifts in a straight
line at constant speed, its direction and speed drawn per sample from the seed, with the path centred on the
sample's (jittered) position; every frame gets its own pixel noise. Clips are stored as uint8
(N, T, 1, 32, 32), light digit on a dark background.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import audio
from . import av_digits as avd
from .builder import DATASETS, SPLITS, BuiltData, DatasetBuilder
from .core import SplitData

logger = logging.getLogger(__name__)

FRAMES = 8
_CHUNK = 128  # samples per batch of clip rendering (x frames x a 64 x 64 canvas each)


_RECIPES = {
    "small": avd._Recipe({"train": 400, "val": 100, "test": 200}, n_voices=24, settings_per_voice=1),
    "full": avd._Recipe({"train": 5_000, "val": 1_000, "test": 2_000}, n_voices=96, settings_per_voice=2),
}


@dataclass(frozen=True)
class Drift:
    """The motion of the digit in a clip: a straight line at constant speed (uniform draws per sample).

    Attributes:
        speed_px: pixels (of the 32 x 32 frame) moved per frame.
    """

    speed_px: tuple[float, float] = (0.3, 0.8)

    def __post_init__(self) -> None:
        lo, hi = self.speed_px
        if not 0 <= lo <= hi:
            raise ValueError(f"speed_px must be an increasing pair of non-negative numbers, got {self.speed_px}")


# av-digits' augmentation with a smaller random shift, so that the drifting digit stays in the frame, and less
# pixel noise per frame: with av-digits' (0.6, 3.0) the video branch of the recipe's classifier often died
# early in training (its last conv block's ReLUs switched off while audio alone fitted) and stayed at chance
# on the small set; with (1.5, 5.0) it reaches about 75-85% val video-only accuracy on the small set.
VIDEO_JITTER = avd.ImageJitter(shift_px=1.0, cnr=(1.5, 5.0))


def drift_offsets(n: int, frames: int, drift: Drift, rng: np.random.Generator) -> np.ndarray:
    """Per-frame displacements of ``n`` clips, in pixels: float64 (n, frames, 2) as (x, y), centred on 0.

    Each clip moves along a random direction at a random speed; frame t sits at ``(t - (T - 1) / 2) * v``.
    """
    angle = rng.uniform(0.0, 2 * np.pi, n)
    speed = rng.uniform(*drift.speed_px, n)
    velocity = np.stack([np.cos(angle), np.sin(angle)], -1) * speed[:, None]
    t = np.arange(frames) - (frames - 1) / 2
    return t[None, :, None] * velocity[:, None, :]


def _frame_thetas(theta: Tensor, offsets: np.ndarray) -> Tensor:
    """The per-sample affine maps (n, 2, 3) of `av_digits._affine_theta` moved by per-frame pixel offsets.

    The maps send output to input coordinates, ``x_in = A (x_out - shift)``, so moving the digit by ``d``
    (normalised units) subtracts ``A d`` from the translation column. Returns (n * T, 2, 3).
    """
    n, frames = offsets.shape[:2]
    d = torch.from_numpy(offsets * (2.0 / avd.IMAGE_SIZE)).float()  # pixels -> normalised units
    a = theta[:, :, :2]
    moved = theta[:, None].repeat(1, frames, 1, 1)
    moved[..., 2] = theta[:, None, :, 2] - torch.einsum("nij,ntj->nti", a, d)
    return moved.reshape(n * frames, 2, 3)


def animate(
    ink: Tensor, soft: np.ndarray, frames: int, jit: avd.ImageJitter, drift: Drift, rng: np.random.Generator
) -> Tensor:
    """Ink canvases float (N, 64, 64) in [0, 1] -> clips uint8 (N, T, 1, 32, 32) of the digit drifting.

    Stroke, affine jitter, background, contrast and blur are drawn once per clip (as `av_digits` draws them
    per image); the drift moves the digit from frame to frame and the pixel noise is drawn per frame. Rows
    where ``soft`` is True (upscaled handwriting) are neither thinned nor blurred.
    """
    n, size = ink.shape[0], avd.IMAGE_SIZE
    stroke = rng.choice(3, size=n, p=jit.stroke_probs)
    stroke[soft & (stroke == 0)] = 1
    x = avd._stroke(ink, stroke)
    theta = _frame_thetas(avd._affine_theta(n, jit, rng), drift_offsets(n, frames, drift, rng))
    x = x.repeat_interleave(frames, 0)
    grid = F.affine_grid(theta, [n * frames, 1, avd._CANVAS, avd._CANVAS], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = F.avg_pool2d(x, avd._CANVAS // size).clamp(0, 1)
    bg = np.repeat(rng.uniform(*jit.background, n), frames)[:, None, None, None]
    contrast = np.repeat(rng.uniform(*jit.contrast, n), frames)[:, None, None, None]
    x = torch.from_numpy(bg).float() + torch.from_numpy(contrast).float() * x
    x = avd._blur(x, np.repeat(np.where(soft, 0.0, rng.uniform(*jit.blur_sigma, n)), frames))
    std = contrast / np.repeat(rng.uniform(*jit.cnr, n), frames)[:, None, None, None]
    x = x + torch.from_numpy(rng.standard_normal((n * frames, 1, size, size)) * std).float()
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).view(n, frames, 1, size, size)


def _split_data(split: str, plan: avd._Plan, clips: Tensor, sounds: Tensor, fonts: list[str]) -> SplitData:
    return SplitData(
        ids=[f"avdv-{split}-{i:06d}" for i in range(len(plan.labels))],
        tensors={"video": clips, "audio": sounds},
        labels=torch.from_numpy(plan.labels.astype(np.int64)),
        groups={
            "image_identity": [fonts[f] if f >= 0 else avd.HANDWRITTEN for f in plan.font],
            "voice": list(plan.voice),
        },
    )


@DATASETS.register("av-digits-video")
class AVDigitsVideo(DatasetBuilder):
    """Audio-visual digit clips: a digit drifting across T frames and the spoken digit, label 0..9.

    Splits hold ``{"video": uint8 (N, T, 1, 32, 32), "audio": float32 (N, 40, 64)}``, int64 labels and the
    groups ``image_identity`` (font stem or ``"handwritten-sklearn"``) and ``voice`` (eSpeak voice).

    Args:
        frames: frames per clip (T).
        jitter: the per-clip augmentation of the digit.
        drift: the digit's motion.
        mix: the audio mix.
    """

    name = "av-digits-video"
    modalities = ("video", "audio")
    num_classes = 10
    version = 1
    description = "clips of a digit drifting across the frame (fonts + handwritten) with eSpeak NG spoken digits"

    def __init__(
        self,
        frames: int = FRAMES,
        jitter: avd.ImageJitter | None = None,
        drift: Drift | None = None,
        mix: avd.AudioMix | None = None,
    ) -> None:
        if frames < 2:
            raise ValueError(f"a clip needs at least 2 frames, got {frames}")
        self.frames = frames
        self.jitter = jitter or VIDEO_JITTER
        self.drift = drift or Drift()
        self.mix = mix or avd.AudioMix()

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        """Generate the dataset (see `DatasetBuilder.build`).

        Raises:
            ValueError: an unknown ``size`` or a negative ``seed``.
        """
        if size not in _RECIPES:
            raise ValueError(f"unknown av-digits-video size {size!r}; valid sizes: {', '.join(_RECIPES)}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        start = time.perf_counter()
        recipe = _RECIPES[size]
        src = avd.draw_sources(recipe, self.mix, seed, progress)
        splits = {}
        for split in SPLITS:
            plan = avd.plan_split(src, recipe, split, seed)
            rng = avd._stream(seed, "video", split)
            render = functools.partial(animate, frames=self.frames, jit=self.jitter, drift=self.drift, rng=rng)
            clips = avd._split_visual(plan, src.glyphs, src.hand_images, render, _CHUNK)
            sounds = avd._split_audio(plan, src.bank, self.mix, avd._stream(seed, "audio", split))
            splits[split] = _split_data(split, plan, clips, sounds, src.names)
        meta = self._meta(src.fonts, src.voices)
        logger.info("built av-digits-video size=%s seed=%d in %.1f s", size, seed, time.perf_counter() - start)
        return BuiltData(splits=splits, meta=meta)

    def _meta(self, fonts: dict[str, list[str]], voices: dict[str, list[str]]) -> dict[str, object]:
        return {
            "fonts": fonts,
            "voices": voices,
            "handwritten_fraction": avd.HANDWRITTEN_FRACTION,
            "video": {"frames": self.frames, "size": avd.IMAGE_SIZE, "polarity": "light digit on dark background",
                      "jitter": dataclasses.asdict(self.jitter), "drift": dataclasses.asdict(self.drift)},
            "audio": {"sample_rate": audio.SAMPLE_RATE, "clip_samples": avd.CLIP_SAMPLES, "n_fft": avd.N_FFT,
                      "hop": avd.HOP, "n_mels": avd.N_MELS, "f_min": avd.F_MIN, "f_max": avd.F_MAX,
                      "log": "ln(mel + 1e-6)", "mix": dataclasses.asdict(self.mix)},
            "versions": avd._versions(),
        }  # fmt: skip
