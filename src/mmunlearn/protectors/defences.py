"""Simple defences against protected (unlearnable) training data, applied by the victim.

Data-side defences transform the protected training images once before training (what a data user
would do to "clean" scraped data); augmentation is applied per batch during victim training;
clean-data mixing replaces a share of the protected pairs by their clean originals (the protector
owned only part of the data). Registry names:

* ``none``: train on the protected pairs as they are.
* ``jpeg`` / ``jpeg10``: JPEG-like compression at quality 75 / 10: RGB -> YCbCr, 8x8 block DCT,
  quantisation with the standard JPEG tables (ITU-T T.81 Annex K) scaled by quality as in the IJG
  library, inverse DCT, back to 8-bit RGB. No chroma subsampling and no entropy coding (lossless, so
  irrelevant to the pixels). Quality 10 is the "image shortcut squeezing" setting.
* ``blur``: Gaussian blur, sigma 1 pixel (5x5 kernel, reflect padding).
* ``crop`` / ``crop_flip``: random crop after 4-pixel reflect padding, per image per batch; ``crop_flip``
  adds random horizontal flips. A flip turns "a left of b" into "b left of a", so on the caption sets
  it also corrupts the clean content; that is the price of that defence here.
* ``mix_clean_25`` / ``mix_clean_50``: 25% / 50% of the pairs (chosen by the victim seed) are clean.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.core import MultimodalDataset
from ..errors import ConfigError
from ..registry import Registry

_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    *([[99] * 8] * 4),
]
"""The example quantisation tables of the JPEG standard (ITU-T T.81, Annex K, tables K.1 and K.2)."""


# -- image transforms -------------------------------------------------------------------------------
def dct_matrix(n: int = 8) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (n, n): ``D @ x`` transforms a column, ``D.T @ c`` inverts it."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def quant_tables(quality: int) -> Tensor:
    """Luma and chroma quantisation tables at ``quality`` (1..100), IJG scaling. Returns (2, 8, 8)."""
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor([_LUMA, _CHROMA], dtype=torch.float64)
    return ((base * scale + 50) // 100).clamp(1, 255)


_RGB_TO_YCC = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)


def jpeg_compress(images: Tensor, quality: int = 75) -> Tensor:
    """JPEG-like lossy compression in plain torch (see the module docstring).

    Args:
        images: float (N, 3, H, W) in [0, 1].
        quality: JPEG quality, 1 (worst) .. 100.

    Returns:
        float (N, 3, H, W) in [0, 1] on the 1/255 grid.
    """
    n, c, h, w = images.shape
    if c != 3:
        raise ConfigError(f"JPEG compression needs RGB images, got {c} channels")
    x = images.double() * 255
    ycc = torch.einsum("kc,nchw->nkhw", _RGB_TO_YCC, x) + torch.tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1) - 128
    ph, pw = (-h) % 8, (-w) % 8
    ycc = F.pad(ycc, (0, pw, 0, ph), mode="replicate")
    blocks = ycc.unfold(2, 8, 8).unfold(3, 8, 8)  # (N, 3, H/8, W/8, 8, 8)
    d = dct_matrix(8)
    coef = d @ blocks @ d.T
    q = quant_tables(quality)[[0, 1, 1]].view(1, 3, 1, 1, 8, 8)
    blocks = d.T @ ((coef / q).round() * q) @ d
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, 3, h + ph, w + pw)[:, :, :h, :w] + 128
    rgb = torch.einsum(
        "kc,nchw->nkhw", torch.linalg.inv(_RGB_TO_YCC), ycc - torch.tensor([0.0, 128, 128]).view(1, 3, 1, 1)
    )
    return (rgb.round().clamp(0, 255) / 255).to(images.dtype)


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
