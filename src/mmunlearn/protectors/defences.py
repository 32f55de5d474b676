"""Simple defences against protected (unlearnable) training data, applied by the victim.

Data-side defences transform the protected training images once before training (what a data user
would do to "clean" scraped data); augmentation is applied per batch during victim training;
clean-data mixing replaces a share of the protected pairs by their clean originals (the protector
owned only part of the data). Registry names:

* ``none``: train on the protected pairs as they are.
* ``jpeg`` / ``jpeg10``: a JPEG round trip at quality 75 / 10 through Pillow's codec with its defaults
  (4:2:0 chroma subsampling), as a data user re-encoding the images would do. Quality 10 is the "image
  shortcut squeezing" setting.
* ``blur``: Gaussian blur, sigma 1 pixel (5x5 kernel, reflect padding).
* ``crop`` / ``crop_flip``: random crop after 4-pixel reflect padding, per image per batch; ``crop_flip``
  adds random horizontal flips. A flip turns "a left of b" into "b left of a", so on the caption sets
  it also corrupts the clean content; that is the price of that defence here.
* ``mix_clean_25`` / ``mix_clean_50``: 25% / 50% of the pairs (chosen by the victim seed) are clean.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..data.core import MultimodalDataset
from ..errors import ConfigError
from ..registry import Registry


def jpeg_compress(images: Tensor, quality: int = 75) -> Tensor:
    """A JPEG round trip through Pillow's codec (libjpeg), as a data user would re-encode scraped images.

    Pillow's defaults apply: 4:2:0 chroma subsampling (at every quality, 100 included), the IJG-scaled
    standard quantisation tables, baseline coding.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        quality: JPEG quality, 1 (worst) .. 100.

    Returns:
        float (N, 3, H, W) in [0, 1] on the 1/255 grid: the decoded images.

    Raises:
        ConfigError: a quality outside 1..100 or images that are not RGB.
    """
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ConfigError(f"JPEG compression needs RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
    pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    decoded = np.stack([_jpeg_round_trip(p, quality) for p in pixels])
    return (torch.from_numpy(decoded).permute(0, 3, 1, 2).to(images.dtype) / 255).contiguous()


def _jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode one uint8 (H, W, 3) image as JPEG at ``quality`` and decode it."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.array(decoded.convert("RGB"))


def gaussian_blur(images: Tensor, sigma: float = 1.0) -> Tensor:
    """Separable Gaussian blur, kernel side ``2 * ceil(2 sigma) + 1``, reflect padding.

    Returns:
        float (N, C, H, W), same shape as ``images``.
    """
    if sigma <= 0:
        raise ConfigError(f"blur sigma must be positive, got {sigma}")
    r = math.ceil(2 * sigma)
    t = torch.arange(-r, r + 1, dtype=images.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def random_crop_flip(images: Tensor, pad: int = 4, flip: bool = True) -> Tensor:
    """Per-image random crop after reflect padding, and random horizontal flips (global torch RNG).

    Returns:
        float (B, C, H, W), same shape as ``images``.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    dx = torch.randint(0, 2 * pad + 1, (b,)).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    if flip:
        mirror = torch.rand(b) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


# -- dataset views ----------------------------------------------------------------------------------
class AugmentedDataset(MultimodalDataset):
    """A dataset whose `batch` applies an image transform on the fly (fresh randomness every batch).

    The library's training loop seeds the global torch RNG per epoch, so augmented training stays
    deterministic and resumable. Views made from it (`take`, `subset`) are plain, un-augmented datasets.
    """

    def __init__(self, base: MultimodalDataset, transform: Callable[[Tensor], Tensor]) -> None:
        super().__init__(
            base.ids, base.inputs, base.labels, base.captions, base.groups, base.present,
            base.num_classes, base.vocab, f"{base.name}+augmented",
        )  # fmt: skip
        self.transform = transform

    def batch(self, positions: Tensor) -> dict[str, Tensor]:
        """`MultimodalDataset.batch` with the transform applied to the images."""
        out = super().batch(positions)
        out["image"] = self.transform(out["image"])
        return out


def mix_clean(protected: MultimodalDataset, clean: MultimodalDataset, share: float, seed: int) -> MultimodalDataset:
    """Replace ``share`` of the protected pairs (random, seeded) with their clean originals.

    Returns:
        A dataset with the protected set's ids and order.
    """
    if not 0 <= share <= 1:
        raise ConfigError(f"clean share must be in [0, 1], got {share}")
    n = len(protected)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n, generator=gen)[: round(share * n)]
    src = clean.positions([protected.ids[i] for i in chosen.tolist()])
    inputs = {m: t.clone() for m, t in protected.inputs.items()}
    for m, t in inputs.items():
        t[chosen] = clean.inputs[m][src]
    out = protected.with_inputs(**inputs)
    if protected.captions is not None and clean.captions is not None:
        captions = list(protected.captions)
        for i, j in zip(chosen.tolist(), src.tolist(), strict=True):
            captions[i] = clean.captions[j]
        out.captions = captions
    out.name = f"{protected.name}+{share:.0%}clean"
    return out


# -- the defences -----------------------------------------------------------------------------------
class Defence:
    """A victim-side defence: turns the protected training pairs into what the victim trains on.

    Attributes:
        name: registry key.
        kind: ``"data"`` (transform once), ``"augment"`` (per batch) or ``"mix"`` (clean pairs mixed in).
    """

    name: ClassVar[str] = "none"
    kind: ClassVar[str] = "data"

    def prepare(self, protected: MultimodalDataset, clean: MultimodalDataset, seed: int) -> MultimodalDataset:
        """The victim's training set. Default: the protected pairs unchanged."""
        return protected


class ImageTransformDefence(Defence):
    """Applies an image transform to every protected training image once."""

    def __init__(self, name: str, transform: Callable[[Tensor], Tensor]) -> None:
        self.name = name  # type: ignore[misc]
        self.transform = transform

    def prepare(self, protected: MultimodalDataset, clean: MultimodalDataset, seed: int) -> MultimodalDataset:
        """The protected set with transformed images."""
        out = protected.with_inputs(image=self.transform(protected.inputs["image"]))
        out.name = f"{protected.name}+{self.name}"
        return out


class AugmentDefence(Defence):
    """Random crop (and flip) of every batch during victim training."""

    kind: ClassVar[str] = "augment"

    def __init__(self, name: str, pad: int = 4, flip: bool = True) -> None:
        self.name = name  # type: ignore[misc]
        self.transform = functools.partial(random_crop_flip, pad=pad, flip=flip)

    def prepare(self, protected: MultimodalDataset, clean: MultimodalDataset, seed: int) -> MultimodalDataset:
        """An `AugmentedDataset` view of the protected set."""
        return AugmentedDataset(protected, self.transform)


class MixCleanDefence(Defence):
    """A share of the training pairs is clean (the protector owned only the rest)."""

    kind: ClassVar[str] = "mix"

    def __init__(self, name: str, share: float) -> None:
        self.name = name  # type: ignore[misc]
        self.share = share

    def prepare(self, protected: MultimodalDataset, clean: MultimodalDataset, seed: int) -> MultimodalDataset:
        """`mix_clean` with the victim seed."""
        return mix_clean(protected, clean, self.share, seed)


DEFENCES: Registry[Defence] = Registry("defence")
"""Victim-side defences by name (see the module docstring)."""

_ENTRIES: Sequence[tuple[str, Callable[[], Defence]]] = (
    ("none", Defence),
    ("jpeg", lambda: ImageTransformDefence("jpeg", functools.partial(jpeg_compress, quality=75))),
    ("jpeg10", lambda: ImageTransformDefence("jpeg10", functools.partial(jpeg_compress, quality=10))),
    ("blur", lambda: ImageTransformDefence("blur", functools.partial(gaussian_blur, sigma=1.0))),
    ("crop", lambda: AugmentDefence("crop", flip=False)),
    ("crop_flip", lambda: AugmentDefence("crop_flip", flip=True)),
    ("mix_clean_25", lambda: MixCleanDefence("mix_clean_25", 0.25)),
    ("mix_clean_50", lambda: MixCleanDefence("mix_clean_50", 0.5)),
)
for _name, _factory in _ENTRIES:
    DEFENCES.register(_name)(_factory)
