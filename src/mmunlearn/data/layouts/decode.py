"""Decoding one image, frame folder or sound file into the tensors the built-in sets use.

Images: Pillow; any mode is made RGB (16-bit modes ``I;16*`` and ``I`` are scaled from 0..65535 to
0..255, ``F`` is clipped to 0..255, alpha is dropped as ``Image.convert("RGB")`` drops it, palette and
CMYK images go through ``convert("RGB")``); the first frame of an animation. Resize rule: the largest
centred crop with the target's (square) aspect ratio, resized with bicubic filtering to
``size x size`` (``PIL.ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)``), i.e. the
shorter side is scaled to ``size`` and the longer one centre-cropped. Result: uint8 (3, size, size).

Sounds: `soundfile` (WAV, FLAC, OGG... any sample rate, any channel count); channels are averaged to
mono, the signal is resampled to the built-in rate (22050 Hz) with `scipy.signal.resample_poly`
(polyphase, Kaiser-windowed anti-aliasing filter), the centre ``clip_seconds`` are kept (zero-padded
at both ends when shorter) and turned into the log-mel features of ``av-digits`` (same FFT size, hop,
bands and band edges): float32 (40, 1 + clip_samples // 345), i.e. (40, 64) for one second.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .. import audio
from ..av_digits import F_MAX, F_MIN, HOP, N_FFT, N_MELS

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class BadMedia(Exception):
    """A media file that is missing or cannot be decoded; ``path`` says which, the message why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as an 8-bit RGB image (see the module docstring for the rule of each mode)."""
    if img.mode in _SIXTEEN_BIT:
        wide = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "F":
        gray = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(path: Path, size: int) -> np.ndarray:
    """The image at ``path``, RGB, centre-cropped and resized: uint8 (3, size, size).

    Raises:
        BadMedia: the file is missing or Pillow cannot decode it.
    """
    if not path.is_file():
        raise BadMedia(path, "image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            fitted = ImageOps.fit(to_rgb(img), (size, size), method=Image.Resampling.BICUBIC)
            return np.asarray(fitted, dtype=np.uint8).transpose(2, 0, 1)
    except _PIL_ERRORS as e:
        raise BadMedia(path, f"unreadable image ({type(e).__name__}: {e})") from e


def even_indices(n: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``n`` frames: the centres of ``count`` equal segments."""
    return [min(n - 1, int((i + 0.5) * n / count)) for i in range(count)]


def middle_index(n: int) -> int:
    """The index of the middle one of ``n`` frames (the later one of the two middles when ``n`` is even)."""
    return n // 2


def decode_frames(root: Path, frames: list[str], count: int, size: int) -> np.ndarray:
    """``count`` evenly sampled frames of a clip: uint8 (count, 3, size, size).

    Raises:
        BadMedia: a frame is missing or unreadable.
    """
    return np.stack([decode_image(root / frames[i], size) for i in even_indices(len(frames), count)])


def clip_samples(clip_seconds: float) -> int:
    """Samples of a clip of ``clip_seconds`` at the built-in rate."""
    return round(clip_seconds * audio.SAMPLE_RATE)


def audio_frames(clip_seconds: float) -> int:
    """Time frames of the log-mel of a clip of ``clip_seconds`` (64 for one second)."""
    return 1 + clip_samples(clip_seconds) // HOP


def read_mono(path: Path) -> np.ndarray:
    """The sound file at ``path`` as float64 mono at the built-in rate.

    Raises:
        BadMedia: missing, unreadable, empty or non-finite.
    """
    import soundfile

    if not path.is_file():
        raise BadMedia(path, "sound file not found")
    try:
        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as e:
        raise BadMedia(path, f"unreadable sound file ({type(e).__name__}: {e})") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise BadMedia(path, "sound file has no samples")
    if not np.isfinite(data).all():
        raise BadMedia(path, "sound file has NaN or infinite samples")
    return resample(data.mean(axis=1), int(rate))


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """``wave`` at ``rate`` Hz resampled to the built-in rate with a polyphase filter (scipy)."""
    from scipy.signal import resample_poly

    if rate == audio.SAMPLE_RATE:
        return wave
    g = gcd(rate, audio.SAMPLE_RATE)
    return np.asarray(resample_poly(wave, audio.SAMPLE_RATE // g, rate // g), dtype=np.float64)


def centre_clip(wave: np.ndarray, n: int) -> np.ndarray:
    """The centre ``n`` samples of ``wave``, zero-padded evenly at both ends when it is shorter."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n]
    out = np.zeros(n, dtype=np.float64)
    start = (n - len(wave)) // 2
    out[start : start + len(wave)] = wave
    return out


def decode_sound(path: Path, clip_seconds: float) -> np.ndarray:
    """Log-mel features of the centre of a sound file: float32 (40, `audio_frames`).

    Raises:
        BadMedia: see `read_mono`.
    """
    wave = centre_clip(read_mono(path), clip_samples(clip_seconds))
    mel = audio.log_mel(torch.from_numpy(wave), audio.SAMPLE_RATE, N_FFT, HOP, N_MELS, F_MIN, F_MAX)
    return mel.numpy()
