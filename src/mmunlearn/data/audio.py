"""Audio for the built-in sets: in-process speech synthesis with eSpeak NG, and a log-mel front end.

Speech comes from the eSpeak NG shared library shipped in the ``espeakng-loader`` wheel, driven through
``ctypes`` in synchronous mode: the library hands int16 samples to a callback, nothing is played and no
file or subprocess is involved. The log-mel front end is plain torch (no torchaudio).

Determinism: eSpeak NG keeps state between utterances in C ``static`` variables (e.g. the pitch-flutter
phase) and seeds its noise generator from the clock. `synthesize` therefore loads a private copy of the
library afresh for every call (a few milliseconds, most of it loading the voice) and seeds its noise
generators (including the C library's ``rand``, which the Klatt voices use), so one (text, settings,
seed) always gives the same samples, whatever was synthesised before.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SAMPLE_RATE = 22050
"""Sample rate of eSpeak NG's output, in Hz."""

# Values of the eSpeak NG C API (speak_lib.h); this ABI has been stable since eSpeak 1.x.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a failed initialisation calls exit() inside the library
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_NOT_FOUND = 2
_ERRORS = {-1: "internal error", 1: "buffer full", 2: "not found"}

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues synthesis.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class SpeechSettings:
    """One eSpeak NG voice setting.

    Attributes:
        voice: a language optionally followed by ``+variant`` (e.g. ``"en-us+f2"``); see `voice_variants`.
        rate: speaking rate in words per minute (80 to 450; 175 is eSpeak's default).
        pitch: base pitch, 0 to 100 (50 is the voice's own pitch).
        pitch_range: intonation range, 0 to 100 (0 is monotone, 50 the voice's own).
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


class _Chunks:
    """Collects the samples the library hands to the synth callback."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def collect(self, wav: ctypes._Pointer, n: int, _events: int) -> int:
        if n > 0 and wav:
            self.parts.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0


_CHUNKS = _Chunks()
# Module-lifetime reference: the C side keeps this function pointer, so it must never be collected.
_CALLBACK = _SynthCallback(_CHUNKS.collect)
_LOCK = threading.Lock()  # the library has process-wide state: one utterance at a time
_PRIVATE: dict[str, Path] = {}


def _data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def _private_library() -> Path:
    """A private copy of the shared library, made once per process.

    Why: unloading is what resets the library's static state, and the dynamic loader only unloads when
    nobody else holds the library; another package in the process may load the wheel's copy.
    """
    if "lib" not in _PRIVATE:
        import espeakng_loader

        src = Path(espeakng_loader.get_library_path())
        if not src.is_file():
            raise RuntimeError(f"the espeakng-loader wheel has no eSpeak NG library at {src}")
        tmp = Path(tempfile.mkdtemp(prefix="mmunlearn-espeak-"))
        atexit.register(shutil.rmtree, tmp, True)
        _PRIVATE["lib"] = Path(shutil.copy2(src, tmp / src.name))
    return _PRIVATE["lib"]


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    lib.espeak_Initialize.argtypes = [c.c_int, c.c_int, c.c_char_p, c.c_int]
    lib.espeak_Initialize.restype = c.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_ng_SetRandSeed.argtypes = [c.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c.c_char_p]
    lib.espeak_SetVoiceByName.restype = c.c_int
    lib.espeak_SetParameter.argtypes = [c.c_int, c.c_int, c.c_int]
    lib.espeak_SetParameter.restype = c.c_int
    lib.espeak_Synth.argtypes = [
        c.c_char_p, c.c_size_t, c.c_uint, c.c_int, c.c_uint, c.c_uint, c.POINTER(c.c_uint), c.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = c.c_int
    lib.espeak_Synchronize.restype = c.c_int
    lib.espeak_Terminate.restype = c.c_int
    lib.espeak_Info.argtypes = [c.POINTER(c.c_char_p)]
    lib.espeak_Info.restype = c.c_char_p


def _seed_libc_rand(seed: int) -> None:
    # A process-wide side effect, harmless: Python, numpy and torch never draw from the C rand().
    if sys.platform != "win32":  # POSIX: the process's own symbols include the C library's srand
        ctypes.CDLL(None).srand(ctypes.c_uint(seed % 2**32))


def _unload(lib: ctypes.CDLL) -> None:
    import _ctypes

    close = getattr(_ctypes, "FreeLibrary" if sys.platform == "win32" else "dlclose")
    close(lib._handle)


@contextmanager
def _fresh_engine(seed: int) -> Iterator[ctypes.CDLL]:
    """Load, initialise and seed a fresh instance of the library; unload it on exit. Hold `_LOCK`."""
    try:
        lib = ctypes.CDLL(str(_private_library()))
    except OSError as exc:
        raise RuntimeError(f"cannot load the eSpeak NG library of espeakng-loader: {exc}") from exc
    data = _data_path()
    try:
        _declare(lib)
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(), _INITIALIZE_DONT_EXIT)
    except AttributeError as exc:  # a symbol is missing: an espeakng-loader build without the full API
        _unload(lib)
        raise RuntimeError(f"the eSpeak NG library of espeakng-loader lacks a function: {exc}") from exc
    if rate != SAMPLE_RATE:
        _unload(lib)
        raise RuntimeError(f"eSpeak NG failed to initialise with its data at {data} (returned {rate})")
    try:
        lib.espeak_SetSynthCallback(_CALLBACK)
        # Initialisation seeds eSpeak's noise generator from the clock; the Klatt synthesiser draws its
        # noise from the C library's rand(). Seed both, for reproducible breath and frication noise.
        lib.espeak_ng_SetRandSeed(seed)
        _seed_libc_rand(seed)
        yield lib
    finally:
        lib.espeak_Terminate()
        _unload(lib)


def _check(code: int, what: str) -> None:
    if code != 0:
        raise RuntimeError(f"eSpeak NG: {what} failed: {_ERRORS.get(code, 'error')} (code {code})")


@functools.cache
def voice_variants() -> tuple[str, ...]:
    """Names of the voice variants shipped with the library (the part after ``+`` in a voice name)."""
    return tuple(sorted(p.name for p in (_data_path() / "voices" / "!v").iterdir() if p.is_file()))


def voice_variant_path(variant: str) -> Path:
    """The file that defines a voice variant (e.g. ``"m3"``).

    Raises:
        ValueError: no such variant.
    """
    if variant not in voice_variants():
        raise ValueError(f"unknown eSpeak NG voice variant {variant!r}; see voice_variants() for the list")
    return _data_path() / "voices" / "!v" / variant


def espeak_version() -> str:
    """The eSpeak NG library version, e.g. ``"1.52.0"``."""
    with _LOCK, _fresh_engine(0) as lib:
        return lib.espeak_Info(None).decode()


def _set_voice(lib: ctypes.CDLL, settings: SpeechSettings) -> None:
    _, _, variant = settings.voice.partition("+")
    if variant:
        voice_variant_path(variant)  # the library silently ignores an unknown variant; refuse it instead
    code = lib.espeak_SetVoiceByName(settings.voice.encode())
    if code == _EE_NOT_FOUND:
        raise ValueError(f"unknown eSpeak NG voice {settings.voice!r} (language not found)")
    _check(code, f"selecting voice {settings.voice!r}")
    # Parameters after the voice: selecting a voice resets them.
    for name, param, value, lo, hi in (
        ("rate", _PARAM_RATE, settings.rate, 80, 450),
        ("volume", _PARAM_VOLUME, 100, 0, 200),
        ("pitch", _PARAM_PITCH, settings.pitch, 0, 100),
        ("pitch_range", _PARAM_RANGE, settings.pitch_range, 0, 100),
    ):
        if not lo <= value <= hi:
            raise ValueError(f"eSpeak NG {name} = {value} is outside [{lo}, {hi}]")
        _check(lib.espeak_SetParameter(param, int(value), 0), f"setting {name} to {value}")


def synthesize(text: str, settings: SpeechSettings, seed: int = 0) -> np.ndarray:
    """Speak ``text`` with eSpeak NG, in-process.

    Args:
        text: what to say (UTF-8), e.g. one word.
        settings: voice, rate and pitch.
        seed: seed of the noise generators (breathy, whispering and Klatt voices draw from them).

    Returns:
        float32 waveform (L,) in [-1, 1] at `SAMPLE_RATE` Hz, including eSpeak's short leading and
        trailing silence. The same arguments always give the same samples.

    Raises:
        ValueError: an unknown voice or variant, or a parameter out of range.
        RuntimeError: the library failed to load, initialise or synthesise, or produced no audio.
    """
    data = text.encode("utf-8") + b"\0"
    with _LOCK, _fresh_engine(seed) as lib:
        _set_voice(lib, settings)
        _CHUNKS.parts = []
        try:
            code = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            _check(code, f"synthesis of {text!r}")
            _check(lib.espeak_Synchronize(), "synchronize")
            parts = _CHUNKS.parts
        finally:
            _CHUNKS.parts = []
    if not parts:
        raise RuntimeError(f"eSpeak NG produced no audio for {text!r} with {settings}")
    return np.concatenate(parts).astype(np.float32) / np.float32(32768.0)


# -- log-mel front end ----------------------------------------------------------------------------------


def hz_to_mel(hz: Tensor) -> Tensor:
    """HTK mel scale: ``2595 * log10(1 + hz / 700)``."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular mel filters on the HTK mel scale (peak 1, no area normalisation).

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, with
    ``n_mels + 2`` points equally spaced in mel between ``f_min`` and ``f_max``.

    Args:
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` frequency bins.
        n_mels: number of filters.
        sample_rate: sample rate in Hz.
        f_min: lowest edge in Hz.
        f_max: highest edge in Hz (default: Nyquist).
        dtype: dtype of the result (computed in float64).

    Returns:
        (n_mels, n_fft // 2 + 1) weights: ``mel_power = fb @ power_spectrum``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(dtype)


def log_mel(
    wave: Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = 512,
    hop: int = 256,
    n_mels: int = 40,
    f_min: float = 20.0,
    f_max: float | None = None,
) -> Tensor:
    """Log-mel spectrogram: Hann-windowed STFT, power spectrum, mel projection, ``log(x + 1e-6)``.

    Frames are centred (the signal is reflect-padded by ``n_fft // 2``), so ``T = 1 + L // hop``.
    Computed in float64 and returned as float32, which in practice keeps reduction-order effects
    (thread counts, BLAS kernels) out of the result.

    Args:
        wave: waveform (L,) or a batch (..., L).
        sample_rate: sample rate in Hz.
        n_fft: FFT and window size.
        hop: hop between frames, in samples.
        n_mels: number of mel bands.
        f_min: lowest mel edge in Hz.
        f_max: highest mel edge in Hz (default: Nyquist).

    Returns:
        float32 (n_mels, T), or (..., n_mels, T) for a batch, with ``T = 1 + L // hop``.

    Raises:
        ValueError: the signal is too short for the reflect padding (``L <= n_fft // 2``).
    """
    if wave.shape[-1] <= n_fft // 2:
        raise ValueError(f"signal of {wave.shape[-1]} samples is too short for n_fft={n_fft}")
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1]).double()
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, pad_mode="reflect",
                      return_complex=True)  # fmt: skip
    power = spec.real.square() + spec.imag.square()  # (B, n_fft // 2 + 1, T)
    fb = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max, dtype=torch.float64)
    mel = torch.einsum("mf,bft->bmt", fb, power)
    out = torch.log(mel + 1e-6).float()
    return out.reshape(*lead, n_mels, out.shape[-1])
