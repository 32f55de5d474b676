"""Retrain: the gold standard. A fresh model trained from scratch on the gold-standard training set."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..models import MultimodalModel, fresh_copy
from ..runtime import model_device
from ..train import TrainConfig, train_model
from .base import UNLEARNERS, Run, Step, UnlearnData, Unlearner
from .objectives import GENERATIVE_KINDS


@dataclass(frozen=True)
class RetrainConfig(TrainConfig):
    """The original's training recipe (`retrain_config` derives it from a recipe or a checkpoint).

    Defaults are the av-digits recipe: 15 epochs, batch 128, AdamW at 2e-3 with warm-up and cosine decay.
    """

    epochs: int = 15


def retrain_config(recipe: TrainConfig | dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The config fields of ``retrain`` for a model trained with ``recipe``: every field of the recipe
    that decides the result (its seed included), then ``overrides``. The one place this is derived."""
    fields = recipe.identity() if isinstance(recipe, TrainConfig) else dict(recipe)
    known = {f.name for f in dataclasses.fields(RetrainConfig)}
    return {**{k: v for k, v in fields.items() if k in known}, **overrides}


@UNLEARNERS.register("retrain")
class Retrain(Unlearner[RetrainConfig, None]):
    """Train from scratch, same recipe and seed, on R plus U with its forgotten modalities missing."""

    name = "retrain"
    paper = "the exact-unlearning reference (e.g. Bourtoule et al., Machine Unlearning, S&P 2021)"
    stage = "reference"
    requires = GENERATIVE_KINDS
    Config = RetrainConfig

    def unlearn(self, model: Any, data: UnlearnData, original: Any = None, work_dir: Any = None) -> Any:
        """Ignore ``model``'s weights; train its architecture from scratch on the gold-standard set.

        With ``work_dir`` (registered models) the training checkpoints there and resumes from it.
        """
        self.validate(model, data)
        fresh = fresh_copy(model, self.config.seed)
        recipe = TrainConfig(**dataclasses.asdict(self.config))
        out = work_dir if isinstance(fresh, MultimodalModel) else None
        trained = train_model(fresh, data.gold_standard, recipe, out_dir=out, device=model_device(model)).model
        return trained.train(model.training)

    def loss(self, model: Any, run: Run[None], step: Step) -> Tensor:
        raise NotImplementedError("retrain trains from scratch; it has no unlearning loss")
