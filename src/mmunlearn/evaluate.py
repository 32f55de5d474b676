"""Model + data -> typed metric records (accuracy per modality, retrieval recall with chance level)."""

from __future__ import annotations

from collections.abc import Mapping

from .data.core import MultimodalDataset
from .metrics.captioning import evaluate_captioner
from .metrics.functional import accuracy, chance_recall, retrieval_recalls
from .metrics.outputs import classifier_logits, pair_embeddings
from .models.protocols import CaptionerModel, Classifier, DualEncoderModel
from .results import MetricResult

__all__ = ["classifier_logits", "evaluate", "evaluate_classifier", "evaluate_dual_encoder", "pair_embeddings"]


def evaluate_classifier(model: Classifier, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """Fused and per-modality accuracy on each split.

    Returns:
        ``acc_fused`` and ``acc_<modality>`` records for every split, with chance level 1 / num_classes.
    """
    out = []
    for split, data in splits.items():
        if data.labels is None or not data.num_classes:
            raise ValueError(f"split {split!r} has no labels")
        chance = 1.0 / data.num_classes
        for modality in (None, *model.modalities):
            value = accuracy(classifier_logits(model, data, modality), data.labels)
            out.append(MetricResult(f"acc_{modality or 'fused'}", split, value, True, chance))
    return out


def evaluate_dual_encoder(model: DualEncoderModel, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
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


def evaluate(model: object, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """The standard evaluation of a model of any kind on the given splits (a captioner: BLEU-4 and CIDEr of
    its generated captions)."""
    if isinstance(model, Classifier):
        return evaluate_classifier(model, splits)
    if isinstance(model, DualEncoderModel):
        return evaluate_dual_encoder(model, splits)
    if isinstance(model, CaptionerModel):
        return evaluate_captioner(model, splits)
    raise TypeError(
        f"no evaluation for {type(model).__name__}: it is neither a classifier, a dual encoder nor a captioner"
    )
