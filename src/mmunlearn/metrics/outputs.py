"""Model outputs over whole datasets (logits, embeddings), computed in evaluation mode, in batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from ..data.core import MultimodalDataset, check_finite
from ..errors import DataError
from ..models.protocols import Classifier, DualEncoderModel
from ..runtime import Batch, eval_mode, model_device, to_device

EVAL_BATCH = 512


def require_finite(dataset: MultimodalDataset, modalities: Iterable[str]) -> None:
    """Refuse to evaluate on inputs with NaN/inf values (they would give NaN metrics, or none, silently).

    Raises:
        DataError: names the dataset and the modality.
    """
    for m in (m for m in modalities if m in dataset.inputs):
        try:
            check_finite(dataset.inputs[m], m, dataset.name)
        except DataError as e:
            raise DataError(f"cannot evaluate: {e}") from None


def _batches(dataset: MultimodalDataset, device: torch.device) -> Iterator[Batch]:
    for idx in torch.arange(len(dataset)).split(EVAL_BATCH):
        yield to_device(dataset.batch(idx), device)


def classifier_logits(model: Classifier, dataset: MultimodalDataset, modality: str | None = None) -> Tensor:
    """Logits over a whole dataset: fused (``modality=None``) or one modality's unimodal logits.

    Returns:
        (N, classes) logits on the CPU.

    Raises:
        DataError: the inputs used contain NaN/inf values.
    """
    require_finite(dataset, dataset.modalities if modality is None else [modality])
    device = model_device(model)
    with eval_mode(model):
        parts = [
            model(b) if modality is None else model.modality_logits(b, modality) for b in _batches(dataset, device)
        ]
    return torch.cat(parts).cpu() if parts else torch.zeros(0, dataset.num_classes or 0)


def pair_embeddings(model: DualEncoderModel, dataset: MultimodalDataset) -> tuple[Tensor, Tensor]:
    """Image and text embeddings of every pair of a dataset.

    Returns:
        (N, D) image embeddings and (N, D) text embeddings, on the CPU.

    Raises:
        DataError: the images or texts contain NaN/inf values.
    """
    require_finite(dataset, [m for m in ("image", "text") if m in dataset.inputs])
    device = model_device(model)
    imgs, txts = [], []
    with eval_mode(model):
        for b in _batches(dataset, device):
            imgs.append(model.encode_image(b["image"]).cpu())
            txts.append(model.encode_text(b["text"]).cpu())
    return torch.cat(imgs), torch.cat(txts)


class LogitCache:
    """Each (dataset, modality) logits of one model computed once (datasets are keyed by identity)."""

    def __init__(self, model: Classifier) -> None:
        self.model = model
        # the dataset is kept with its logits, so that its id cannot be reused while the cache lives
        self._cache: dict[tuple[int, str | None], tuple[MultimodalDataset, Tensor]] = {}

    def __call__(self, dataset: MultimodalDataset, modality: str | None = None) -> Tensor:
        key = (id(dataset), modality)
        if key not in self._cache:
            self._cache[key] = (dataset, classifier_logits(self.model, dataset, modality))
        return self._cache[key][1]
