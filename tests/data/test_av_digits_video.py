"""Tests of the built-in av-digits-video set (small size only) and of its clip rendering."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from mmunlearn.data import load_dataset
from mmunlearn.data.av_digits import HANDWRITTEN, N_FRAMES, N_MELS, ImageJitter, digit_fonts
from mmunlearn.data.av_digits_video import FRAMES, AVDigitsVideo, Drift, animate, drift_offsets
from mmunlearn.data.builder import DATASETS, SPLITS, BuiltData

SMALL = {"train": 400, "val": 100, "test": 200}
# No jitter, blur or noise: a clean digit on black, only the drift moves it.
CLEAN = ImageJitter(
    rotation_deg=0.0,
    scale=(1.0, 1.0),
    shear=0.0,
    shift_px=0.0,
    stroke_probs=(0.0, 1.0, 0.0),
    background=(0.0, 0.0),
    contrast=(1.0, 1.0),
    blur_sigma=(0.0, 0.0),
    cnr=(1e9, 1e9),
)


@pytest.fixture(scope="module")
def built() -> BuiltData:
    return AVDigitsVideo().build("small", seed=0)


def _digests(data: BuiltData) -> dict[str, str]:
    return {
        f"{split}/{name}": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
        for split, part in data.splits.items()
        for name, t in {**part.tensors, "labels": part.labels}.items()
    }


def _clean_clips(speed: float, seed: int = 0) -> torch.Tensor:
    """Noise-free clips of the ten digits of one font, float (10, T, 32, 32) in [0, 1]."""
    ink = torch.from_numpy(digit_fonts()[0][2].copy())
    drift = Drift(speed_px=(speed, speed))
    clips = animate(ink, np.zeros(10, dtype=bool), FRAMES, CLEAN, drift, np.random.default_rng(seed))
    return clips[:, :, 0].float() / 255


def _centroids(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., 2) ink centroid as (x, y) in pixels."""
    h, w = frames.shape[-2:]
    mass = frames.sum((-2, -1)).clamp_min(1e-9)
    x = (frames * torch.arange(w, dtype=frames.dtype)).sum((-2, -1)) / mass
    y = (frames * torch.arange(h, dtype=frames.dtype)[:, None]).sum((-2, -1)) / mass
    return torch.stack([x, y], -1)


def test_registered() -> None:
    assert DATASETS.get("av-digits-video") is AVDigitsVideo
    assert AVDigitsVideo.modalities == ("video", "audio") and AVDigitsVideo.num_classes == 10


def test_shapes_dtypes_labels_and_groups(built: BuiltData) -> None:
    assert set(built.splits) == set(SPLITS)
    for split, part in built.splits.items():
        n = SMALL[split]
        assert part.tensors["video"].shape == (n, FRAMES, 1, 32, 32) and part.tensors["video"].dtype == torch.uint8
        assert part.tensors["audio"].shape == (n, N_MELS, N_FRAMES) and part.tensors["audio"].dtype == torch.float32
        assert part.labels is not None and part.labels.bincount(minlength=10).tolist() == [n // 10] * 10
        assert set(part.groups) == {"image_identity", "voice"} and all(len(v) == n for v in part.groups.values())
        assert HANDWRITTEN in part.groups["image_identity"]
    ids = [i for part in built.splits.values() for i in part.ids]
    assert len(ids) == len(set(ids)) and built.splits["train"].ids[7] == "avdv-train-000007"
    assert built.meta["video"]["frames"] == FRAMES  # type: ignore[index]


def test_held_out_identities(built: BuiltData) -> None:
    for kind in ("image_identity", "voice"):
        test = set(built.splits["test"].groups[kind]) - {HANDWRITTEN}
        seen = set(built.splits["train"].groups[kind]) | set(built.splits["val"].groups[kind])
        assert test and not test & seen


def test_same_seed_same_bytes(built: BuiltData) -> None:
    again = AVDigitsVideo().build("small", seed=0)
    assert _digests(again) == _digests(built)
    assert all(again.splits[s].groups == built.splits[s].groups for s in SPLITS)


def test_drift_is_visible(built: BuiltData) -> None:
    video = built.splits["train"].tensors["video"]
    assert all(not torch.equal(clip[0], clip[-1]) for clip in video)
    # noise-free: the digit's centroid moves along a straight line, (T - 1) x speed pixels at a constant pace
    centroids = _centroids(_clean_clips(speed=1.0))
    steps = centroids[:, 1:] - centroids[:, :-1]
    assert torch.allclose((centroids[:, -1] - centroids[:, 0]).norm(dim=1), torch.full((10,), FRAMES - 1.0), atol=0.3)
    assert torch.allclose(steps, steps.mean(1, keepdim=True).expand_as(steps), atol=0.15)


def test_drift_offsets_are_centred_straight_lines() -> None:
    offsets = drift_offsets(50, FRAMES, Drift(speed_px=(0.5, 1.0)), np.random.default_rng(0))
    assert offsets.shape == (50, FRAMES, 2)
    assert np.allclose(offsets.mean(1), 0.0)
    speed = np.linalg.norm(offsets[:, 1] - offsets[:, 0], axis=1)
    assert np.allclose(np.diff(offsets, axis=1), (offsets[:, 1] - offsets[:, 0])[:, None])
    assert (speed >= 0.5 - 1e-9).all() and (speed <= 1.0 + 1e-9).all()
    angles = np.arctan2(offsets[:, 1, 1] - offsets[:, 0, 1], offsets[:, 1, 0] - offsets[:, 0, 0])
    assert np.ptp(angles) > np.pi  # directions vary


def test_every_frame_shows_the_labelled_digit() -> None:
    clips = _clean_clips(speed=0.8, seed=3)
    # each frame is matched to the first frames of the ten clips by its best (circular) cross-correlation over shifts
    unit = clips / clips.flatten(2).norm(dim=2)[..., None, None]
    spectra = torch.fft.rfft2(unit, s=(64, 64))  # zero-padded: shifts do not wrap the digit around
    templates = spectra[:, 0]
    for digit in range(10):
        corr = torch.fft.irfft2(spectra[digit][:, None] * templates[None].conj(), s=(64, 64))  # (T, 10, 64, 64)
        assert corr.flatten(2).amax(2).argmax(1).tolist() == [digit] * FRAMES
    mass = clips.sum((-2, -1))
    assert ((mass.max(1).values - mass.min(1).values) / mass.mean(1) < 0.05).all()  # the digit stays in the frame


def test_zero_speed_keeps_the_digit_still() -> None:
    clips = _clean_clips(speed=0.0)
    # only the (vanishing) per-frame noise differs: it can tip a value that lies half-way between grey levels
    assert float((clips - clips[:, :1]).abs().max()) <= 1.5 / 255


def test_loaded_as_float_clips(data_cache) -> None:
    splits = load_dataset("av-digits-video", "small", 0, data_cache)
    video = splits.train.inputs["video"]
    assert video.dtype == torch.float32 and video.shape == (SMALL["train"], FRAMES, 1, 32, 32)
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0
    assert splits.train.modalities == ("audio", "video")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="small, full"):
        AVDigitsVideo().build("huge", seed=0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        AVDigitsVideo(frames=1)
    with pytest.raises(ValueError, match="speed_px"):
        Drift(speed_px=(2.0, 1.0))
