"""One protection per image: tying the noise (and triggers) of the captions that share an image.

In a layout with several captions per image (Karpathy, COCO: 5 per image) every caption is one sample
and ``groups["image"]`` names its image. A data owner publishes one file per image, so every caption of
an image must carry the same noise; the protectors therefore tie the rows of a group:

* `image_leaders` maps each row to the first row of its image (None when every row has its own image,
  e.g. the built-in sets, which then run exactly as before, bit for bit);
* `tie_to_leaders` copies each leader's row to the other rows of its image (initial draws);
* `tie_batch_mean` averages a batch's per-caption updates over each image and writes the mean to every
  row of that image (the min-min PGD step);
* `tie_batch_first` gives every row of an image the value of the image's first row in the batch
  (HotFlip: one trigger per image).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.core import MultimodalDataset

IMAGE_GROUP = "image"
"""The group kind naming the image of a caption (set by the image-caption layouts)."""


def image_leaders(dataset: MultimodalDataset) -> Tensor | None:
    """The first row of each row's image: int64 (N,), or None when no two rows share an image.

    Returns:
        ``leaders[i]`` = the smallest row index ``j`` with ``groups["image"][j] == groups["image"][i]``;
        None without an ``image`` group or when every image has one caption.
    """
    names = dataset.groups.get(IMAGE_GROUP)
    if not names:
        return None
    first: dict[str, int] = {}
    leaders = [first.setdefault(name, i) for i, name in enumerate(names)]
    if len(first) == len(names):
        return None
    return torch.tensor(leaders, dtype=torch.long)


def tie_to_leaders(values: Tensor, leaders: Tensor | None) -> Tensor:
    """``values`` with every row replaced by its image leader's row (a copy; unchanged when ``leaders`` is None)."""
    return values if leaders is None else values[leaders].clone()


def _batch_groups(idx: Tensor, leaders: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(distinct leaders of the batch, each batch row's position among them, mask of every row of those images)."""
    keys = leaders[idx]
    uniq, inverse = keys.unique(return_inverse=True)
    return uniq, inverse, torch.isin(leaders, uniq)


def tie_batch_mean(noise: Tensor, idx: Tensor, update: Tensor, leaders: Tensor, units: int) -> None:
    """Write a batch's noise update into ``noise``, one value per image: the mean over its captions in the batch.

    Args:
        noise: int16 (N, C, H, W) stored noise in units of 1/255, updated in place.
        idx: int64 (B,) the batch's rows.
        update: float (B, C, H, W) the batch's new noise in pixel units (each row within the budget).
        leaders: `image_leaders` of the dataset.
        units: the budget in units of 1/255 (the rounded mean is clipped to it).
    """
    uniq, inverse, members = _batch_groups(idx, leaders)
    sums = torch.zeros((len(uniq), *update.shape[1:]), dtype=update.dtype).index_add_(0, inverse, update * 255)
    counts = torch.bincount(inverse, minlength=len(uniq)).to(update.dtype).view(-1, *([1] * (update.dim() - 1)))
    tied = (sums / counts).round().clamp(-units, units).to(noise.dtype)
    noise[members] = tied[torch.searchsorted(uniq, leaders[members])]


def tie_batch_first(values: Tensor, idx: Tensor, leaders: Tensor) -> None:
    """Give every row of each image met in the batch the batch's value of that image's first row (in place)."""
    uniq, inverse, members = _batch_groups(idx, leaders)
    first = torch.full((len(uniq),), len(idx), dtype=torch.long).scatter_reduce_(
        0, inverse, torch.arange(len(idx)), reduce="amin"
    )
    values[members] = values[idx[first]][torch.searchsorted(uniq, leaders[members])]


__all__ = ["IMAGE_GROUP", "image_leaders", "tie_batch_first", "tie_batch_mean", "tie_to_leaders"]
