"""Rows that share one protection: captions of one image, and k-means groups of images.

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

Grouped protection generalises the image tie: with ``groups=k`` a protector gives one noise and one
trigger to each of ``k`` groups of pairs (Unlearnable Clusters, Zhang et al., CVPR 2023, arXiv 2301.01217;
the class-wise variant of the MEM authors' code). `group_leaders` forms the groups by k-means on the
L2-normalised surrogate image embedding of every distinct image, so the captions of one image always
land in one group, and returns a ``leaders`` tensor of the same meaning (first row of each row's group);
the tie functions above then apply unchanged. A group with one image is the sample-wise case.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.core import MultimodalDataset
from ..errors import ConfigError
from ..models.protocols import DualEncoderModel

IMAGE_GROUP = "image"
"""The group kind naming the image of a caption (set by the image-caption layouts)."""
KMEANS_N_INIT = 10
"""k-means restarts (best inertia kept): sklearn's classic default, chosen here because "auto" means a
single start for k-means++ and the cost (a few thousand 64-d points) is negligible."""
FEATURE_BATCH = 256
"""Images per surrogate forward when embedding them for k-means (memory only; results do not depend on it)."""


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


def image_rows(dataset: MultimodalDataset) -> tuple[Tensor, Tensor]:
    """The first row of every distinct image and each row's image number.

    Returns:
        (``firsts`` int64 (M,): the first row of each of the M distinct images, in order of appearance;
        ``image_of`` int64 (N,): ``image_of[i]`` = the number of row i's image, so
        ``firsts[image_of[i]]`` is row i's image leader). Without an ``image`` group every row is its own image.
    """
    names = dataset.groups.get(IMAGE_GROUP) or [str(i) for i in range(len(dataset))]
    number: dict[str, int] = {}
    image_of = [number.setdefault(name, len(number)) for name in names]
    firsts = [0] * len(number)
    for i, m in reversed(list(enumerate(image_of))):
        firsts[m] = i
    return torch.tensor(firsts, dtype=torch.long), torch.tensor(image_of, dtype=torch.long)


def image_count(dataset: MultimodalDataset) -> int:
    """Number of distinct images (the most groups a grouped protection can have)."""
    names = dataset.groups.get(IMAGE_GROUP)
    return len(set(names)) if names else len(dataset)


def check_group_count(groups: int | None, dataset: MultimodalDataset) -> None:
    """Raise `ConfigError` when ``groups`` exceeds the number of distinct images of ``dataset``."""
    images = image_count(dataset)
    if groups is not None and groups > images:
        raise ConfigError(
            f"groups={groups} exceeds the {images} distinct images of dataset {dataset.name!r}: "
            f"use groups <= {images} (groups={images} is sample-wise protection, one image per group)"
        )


def image_features(model: DualEncoderModel, images: Tensor) -> Tensor:
    """L2-normalised image embeddings of the model (evaluation mode, no gradients; the model is left as found).

    Args:
        model: the surrogate.
        images: float (M, C, H, W) in [0, 1].

    Returns:
        float (M, D) unit rows.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            emb = torch.cat([model.encode_image(b) for b in images.split(FEATURE_BATCH)])
    finally:
        model.train(was_training)
    return torch.nn.functional.normalize(emb.double(), dim=-1)


def kmeans_labels(features: Tensor, k: int, seed: int) -> Tensor:
    """k-means cluster of every row, clusters numbered in order of first appearance.

    Args:
        features: float (M, D) points.
        k: clusters (<= M).
        seed: sklearn's ``random_state`` (the k-means++ seeding of every restart).

    Returns:
        int64 (M,) labels; the first row is in cluster 0, the first row outside cluster 0 in cluster 1, ...
        (fewer than k distinct labels only when the points have fewer than k distinct values).
    """
    from sklearn.cluster import KMeans  # imported on use: sklearn is slow to load and only grouped runs need it

    raw = KMeans(n_clusters=k, random_state=seed, n_init=KMEANS_N_INIT).fit_predict(features.numpy())
    _, first = np.unique(raw, return_index=True)
    rank = np.empty(int(raw.max()) + 1, dtype=np.int64)
    rank[raw[np.sort(first)]] = np.arange(len(first))
    return torch.from_numpy(rank[raw])


def group_leaders(dataset: MultimodalDataset, model: DualEncoderModel, k: int, seed: int) -> Tensor:
    """The first row of each row's k-means group (groups formed over distinct images, captions follow their image).

    Args:
        dataset: the pairs (``groups["image"]`` ties captions of one image, if present).
        model: the surrogate whose image embeddings are clustered (evaluated as given).
        k: number of groups (<= the number of distinct images: `check_group_count`).
        seed: k-means seed.

    Returns:
        int64 (N,) leaders, as `image_leaders` but over groups (never None).
    """
    check_group_count(k, dataset)
    firsts, image_of = image_rows(dataset)
    labels = kmeans_labels(image_features(model, dataset.inputs["image"][firsts]), k, seed)[image_of]
    lead = torch.full((int(labels.max()) + 1,), len(labels), dtype=torch.long)
    lead = lead.scatter_reduce_(0, labels, torch.arange(len(labels)), reduce="amin")
    return lead[labels]


def row_leaders(
    dataset: MultimodalDataset, model: DualEncoderModel | None, groups: int | None, seed: int
) -> Tensor | None:
    """The tie of a protection: `image_leaders` when ``groups`` is None, else `group_leaders` (needs ``model``)."""
    if groups is None:
        return image_leaders(dataset)
    if model is None:
        raise ConfigError("grouped protection needs a surrogate model to embed the images")
    return group_leaders(dataset, model, groups, seed)


def group_stats(leaders: Tensor) -> dict[str, Any]:
    """JSON-ready description of a grouping: group count, sizes (rows) and every row's group number.

    Groups are numbered by their first row, so ``assignment`` is canonical for a partition.
    """
    uniq, number = leaders.unique(return_inverse=True)
    return {
        "count": len(uniq),
        "sizes": torch.bincount(number, minlength=len(uniq)).tolist(),
        "assignment": number.tolist(),
    }


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


__all__ = [
    "IMAGE_GROUP",
    "check_group_count",
    "group_leaders",
    "group_stats",
    "image_count",
    "image_features",
    "image_leaders",
    "image_rows",
    "kmeans_labels",
    "row_leaders",
    "tie_batch_first",
    "tie_batch_mean",
    "tie_to_leaders",
]
