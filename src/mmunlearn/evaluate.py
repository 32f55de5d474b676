"""Model + data -> typed metric records (accuracy per modality, retrieval recall with chance level)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor

from .data.core import MultimodalDataset
from .metrics.functional import accuracy, chance_recall, retrieval_recalls
from .models import DualEncoder, MultimodalClassifier, MultimodalModel
from .results import MetricResult

EVAL_BATCH = 512


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluation mode without gradients, restoring the previous train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(dataset: MultimodalDataset, device: torch.device) -> Iterator[dict[str, Tensor]]:
    for idx in torch.arange(len(dataset)).split(EVAL_BATCH):
        yield {k: v.to(device) for k, v in dataset.batch(idx).items()}


def classifier_logits(model: MultimodalClassifier, dataset: MultimodalDataset, modality: str | None = None) -> Tensor:
    """Logits over a whole dataset: fused (``modality=None``) or one modality's unimodal logits.

    Returns:
        (N, num_classes) logits on the CPU.
    """
    device = _device(model)
    with eval_mode(model):
        parts = [
            model(b) if modality is None else model.modality_logits(b, modality) for b in _batches(dataset, device)
        ]
    return torch.cat(parts).cpu() if parts else torch.zeros(0, model.config.num_classes)


def pair_embeddings(model: DualEncoder, dataset: MultimodalDataset) -> tuple[Tensor, Tensor]:
    """Image and text embeddings of every pair of a dataset.

    Returns:
        (N, D) image embeddings and (N, D) text embeddings, on the CPU.
    """
    device = _device(model)
    imgs, txts = [], []
    with eval_mode(model):
        for b in _batches(dataset, device):
            imgs.append(model.encode_image(b["image"]).cpu())
            txts.append(model.encode_text(b["text"]).cpu())
    return torch.cat(imgs), torch.cat(txts)


def evaluate_classifier(model: MultimodalClassifier, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """Fused and per-modality accuracy on each split.

    Returns:
        ``acc_fused`` and ``acc_<modality>`` records for every split, with chance level 1 / num_classes.
    """
    chance = 1.0 / model.config.num_classes
    out = []
    for split, data in splits.items():
        if data.labels is None:
            raise ValueError(f"split {split!r} has no labels")
        for modality in (None, *model.modalities):
            value = accuracy(classifier_logits(model, data, modality), data.labels)
            out.append(MetricResult(f"acc_{modality or 'fused'}", split, value, True, chance))
    return out


def evaluate_dual_encoder(model: DualEncoder, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """Image-to-text and text-to-image Recall@1/5/10 and their mean on each split, with chance level.

    Each split is an N-way retrieval test: row i's image against every caption of the split.
    """
    out = []
    for split, data in splits.items():
        recalls = retrieval_recalls(*pair_embeddings(model, data))
        for name, value in recalls.items():
            k = 1 if name == "mean_recall" else int(name.split("_r")[1])
            chance = (
                (sum(chance_recall(len(data), kk) for kk in (1, 5, 10)) / 3)
                if name == "mean_recall"
                else chance_recall(len(data), k)
            )
            out.append(MetricResult(name, split, value, True, chance))
    return out


def evaluate(model: MultimodalModel, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """The standard evaluation of a model of either kind on the given splits."""
    if isinstance(model, MultimodalClassifier):
        return evaluate_classifier(model, splits)
    if isinstance(model, DualEncoder):
        return evaluate_dual_encoder(model, splits)
    raise TypeError(f"no evaluation for model kind {model.kind!r}")
