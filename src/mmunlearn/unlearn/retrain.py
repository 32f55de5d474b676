"""Retrain: the gold standard. A fresh model trained from scratch on the gold-standard training set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor

from ..data.core import MultimodalDataset
from ..models import MultimodalModel
from ..train import TrainConfig, build_model, train
from .base import UNLEARNERS, Batch, UnlearnConfig, Unlearner


@dataclass(frozen=True)
class RetrainConfig(UnlearnConfig):
    """The original recipe (the `forget` command fills these from the checkpoint's manifest).

    Defaults are the av-digits recipe: 15 epochs, batch 128, AdamW at 2e-3 with warm-up and cosine decay.
    """

    epochs: int = 15
    lr: float = 2e-3
    batch_size: int = 128
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0


@UNLEARNERS.register("retrain")
class Retrain(Unlearner):
    """Train from scratch, same recipe and seed, on R plus U with its forgotten modalities missing."""

    name = "retrain"
    paper = "the exact-unlearning reference (e.g. Bourtoule et al., Machine Unlearning, S&P 2021)"
    Config = RetrainConfig

    def unlearn(
        self,
        model: MultimodalModel,
        unlearn_set: MultimodalDataset,
        retain_set: MultimodalDataset | None,
        *,
        original: MultimodalModel | None = None,
        modalities: Iterable[str] = ("image",),
        validation: MultimodalDataset | None = None,
    ) -> MultimodalModel:
        """Ignore ``model``'s weights; train its architecture from scratch on ``retain_set``."""
        self._validate(model, unlearn_set, retain_set, frozenset(modalities))
        c = self.config
        recipe = TrainConfig(
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            weight_decay=c.weight_decay,
            warmup_epochs=c.warmup_epochs,  # type: ignore[attr-defined]
            seed=c.seed,
            grad_clip=c.grad_clip,
            progress=c.progress,
        )
        fresh = build_model(model.kind, c.seed, **model.config_dict())
        assert retain_set is not None
        return train(fresh, retain_set, recipe, device=next(model.parameters()).device).model

    def loss(self, model: MultimodalModel, unlearn_batch: Batch | None, retain_batch: Batch | None) -> Tensor:
        raise NotImplementedError("retrain trains from scratch; it has no unlearning loss")
