"""Victim-side defences: JPEG (Pillow), blur, crop/flip augmentation, clean-data mixing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from caption_toy import make_captions
from PIL import Image

from mmunlearn.errors import ConfigError
from mmunlearn.protectors.defences import (
    DEFENCES,
    AugmentedDataset,
    gaussian_blur,
    jpeg_compress,
    mix_clean,
    random_crop_flip,
)


def test_registry_names():
    assert DEFENCES.names() == sorted(
        ["none", "jpeg", "jpeg10", "blur", "crop", "crop_flip", "mix_clean_25", "mix_clean_50"]
    )


def test_jpeg_is_pillows_codec_with_chroma_subsampling():
    images = make_captions(n=3, side=16).inputs["image"]
    for i, image in enumerate(images):  # naive reference: one image at a time through Pillow
        buffer = io.BytesIO()
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(buffer, "JPEG", quality=75)
        expected = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1) / 255
        assert torch.equal(jpeg_compress(images, 75)[i], expected)
    # a red/blue checkerboard of constant luma-ish content: 4:2:0 subsampling averages its colour away
    check = torch.zeros(1, 3, 16, 16)
    check[0, 0, ::2, ::2] = check[0, 0, 1::2, 1::2] = 1.0
    check[0, 2, 1::2, ::2] = check[0, 2, ::2, 1::2] = 1.0
    out = jpeg_compress(check, 90)
    assert float((out[0, 0] - out[0, 2]).abs().mean()) < 0.5 * float((check[0, 0] - check[0, 2]).abs().mean())
    with pytest.raises(ConfigError, match="quality"):
        jpeg_compress(images, 0)
    with pytest.raises(ConfigError, match="RGB"):
        jpeg_compress(images[:, :1], 75)


def test_jpeg_quality_orders_the_error_and_keeps_range():
    images = make_captions(n=4, side=16).inputs["image"]
    err = {q: float((jpeg_compress(images, q) - images).abs().mean()) for q in (100, 75, 10)}
    assert err[100] < err[75] < err[10]  # (random colours: 4:2:0 subsampling costs even at 100)
    out = jpeg_compress(images, 10)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal((out * 255).round() / 255, out)  # back on the 8-bit grid
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(2, 3, 16, 16).contiguous()
    assert float((jpeg_compress(smooth, 90) - smooth).abs().max()) < 4 / 255
    assert jpeg_compress(make_captions(n=1, side=10).inputs["image"], 50).shape == (1, 3, 10, 10)


def test_blur_keeps_constants_and_smooths_noise():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat), flat)
    noise = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise).std() < noise.std() / 2


def test_crop_flip_shapes_and_content():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 8, 8)
    out = random_crop_flip(images, pad=2, flip=True)
    assert out.shape == images.shape
    assert torch.equal(random_crop_flip(images, pad=0, flip=False), images)


def test_augmented_dataset_transforms_batches_only():
    data = make_captions(n=4)
    aug = AugmentedDataset(data, lambda x: x * 0)
    assert float(aug.batch(torch.arange(4))["image"].abs().max()) == 0
    assert torch.equal(aug.inputs["image"], data.inputs["image"]) and aug.ids == data.ids


def test_mix_clean_replaces_the_share():
    clean = make_captions(n=40)
    prot = clean.with_inputs(image=(clean.inputs["image"] + 0.5).clamp(0, 1))
    out = mix_clean(prot, clean, 0.25, seed=0)
    same = (out.inputs["image"] == clean.inputs["image"]).flatten(1).all(1)
    assert int(same.sum()) == 10 and out.ids == clean.ids
    assert DEFENCES.create("mix_clean_50").prepare(prot, clean, 0).inputs["image"].shape == prot.inputs["image"].shape
