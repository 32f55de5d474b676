"""Tests of the eSpeak NG synthesis wrapper and the log-mel front end (against naive references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmunlearn.data.audio import (
    SAMPLE_RATE,
    SpeechSettings,
    log_mel,
    mel_filterbank,
    synthesize,
    voice_variants,
)


def _naive_filterbank(n_fft: int, n_mels: int, sr: int, f_min: float, f_max: float) -> np.ndarray:
    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    points = [hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, centre, right = points[m], points[m + 1], points[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left <= f <= centre:
                fb[m, k] = (f - left) / (centre - left)
            elif centre < f <= right:
                fb[m, k] = (right - f) / (right - centre)
    return fb


def _naive_log_mel(x: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int, f_min: float) -> np.ndarray:
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    window = [0.5 - 0.5 * math.cos(2 * math.pi * n / n_fft) for n in range(n_fft)]  # periodic Hann
    n_frames = 1 + len(x) // hop
    power = np.zeros((n_fft // 2 + 1, n_frames))
    for t in range(n_frames):
        frame = [xp[t * hop + n] * window[n] for n in range(n_fft)]
        for k in range(n_fft // 2 + 1):
            re = sum(frame[n] * math.cos(2 * math.pi * k * n / n_fft) for n in range(n_fft))
            im = -sum(frame[n] * math.sin(2 * math.pi * k * n / n_fft) for n in range(n_fft))
            power[k, t] = re * re + im * im
    fb = _naive_filterbank(n_fft, n_mels, sr, f_min, sr / 2)
    return np.log(fb @ power + 1e-6)


def test_mel_filterbank_matches_naive_formula() -> None:
    got = mel_filterbank(64, 8, 8000, f_min=50.0, f_max=3500.0).numpy()
    want = _naive_filterbank(64, 8, 8000, 50.0, 3500.0)
    assert got.shape == (8, 33)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_log_mel_matches_naive_dft() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(200) / 8000
    x = np.sin(2 * np.pi * 440 * t) + 0.3 * rng.standard_normal(200)
    got = log_mel(torch.from_numpy(x).float(), sample_rate=8000, n_fft=32, hop=16, n_mels=6, f_min=30.0)
    want = _naive_log_mel(x.astype(np.float32).astype(np.float64), 8000, 32, 16, 6, 30.0)
    assert got.shape == (6, 1 + 200 // 16) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_log_mel_batches() -> None:
    x = torch.randn(3, 2, 1000)
    out = log_mel(x, sample_rate=SAMPLE_RATE, n_fft=128, hop=50, n_mels=10)
    assert out.shape == (3, 2, 10, 21)
    torch.testing.assert_close(out[1, 0], log_mel(x[1, 0], sample_rate=SAMPLE_RATE, n_fft=128, hop=50, n_mels=10))


def test_mel_filterbank_rejects_bad_range() -> None:
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(64, 8, 8000, f_min=100.0, f_max=5000.0)


def test_synthesis_is_finite_nonempty_and_deterministic() -> None:
    settings = SpeechSettings("en-us+m3", rate=180, pitch=40)
    first = synthesize("seven", settings)
    synthesize("three", SpeechSettings("en+f2", rate=220))  # must not leak state into the next call
    second = synthesize("seven", settings)
    assert first.dtype == np.float32 and first.ndim == 1
    assert len(first) > SAMPLE_RATE // 10 and np.isfinite(first).all()
    assert np.abs(first).max() > 0.05 and np.abs(first).max() <= 1.0
    np.testing.assert_array_equal(first, second)


def test_settings_change_the_sound() -> None:
    a = synthesize("nine", SpeechSettings("en+m3", pitch=20))
    b = synthesize("nine", SpeechSettings("en+m3", pitch=80))
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_unknown_voices_and_bad_parameters_are_errors() -> None:
    assert "m3" in voice_variants() and "f2" in voice_variants()
    with pytest.raises(ValueError, match="variant"):
        synthesize("one", SpeechSettings("en+no-such-variant"))
    with pytest.raises(ValueError, match="voice"):
        synthesize("one", SpeechSettings("xx-nolang"))
    with pytest.raises(ValueError, match="outside"):
        synthesize("one", SpeechSettings("en", rate=5))
