"""Victims: fresh dual encoders trained on protected pairs, evaluated on clean test pairs.

A victim is what an unauthorised data user would train: the dataset's own training recipe
(`mmunlearn.recipes.RECIPES`), from scratch, with a seed different from the protector's surrogate,
optionally with another image tower (transfer) and a defence (`mmunlearn.protectors.defences`). It is
evaluated on the *clean* test split (no noise, no trigger): image-to-text and text-to-image
Recall@1/5/10 and their mean, each next to its chance level.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from .data.core import MultimodalDataset
from .data.store import DatasetSplits
from .errors import ConfigError
from .evaluate import evaluate_dual_encoder
from .models import DualEncoder
from .models.dual_encoder import IMAGE_ENCODERS
from .protectors.defences import DEFENCES
from .protectors.protected import ProtectedDataset
from .recipes import Recipe, new_model, recipe_for_data
from .results import MetricResult, RunRecord
from .train import train_model
from .versions import versions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VictimConfig:
    """How the victim is trained.

    Attributes:
        seed: victim seed (initial weights, data order, defence draws); None = the surrogate's seed + 1.
            It must differ from the surrogate's seed: the same seed would start the victim from the
            surrogate's initial weights.
        image_encoder: image tower (``"cnn"``, the recipe's, or ``"resnet"`` for transfer).
        defence: a `DEFENCES` name.
        epochs: training epochs; None = the dataset recipe's.
        progress: progress bar.
    """

    seed: int | None = None
    image_encoder: str = "cnn"
    defence: str = "none"
    epochs: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"victim seed must be >= 0, got {self.seed}")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ConfigError(f"unknown image_encoder {self.image_encoder!r}; choose one of {sorted(IMAGE_ENCODERS)}")
        if self.defence not in DEFENCES:
            raise ConfigError(f"unknown defence {self.defence!r}; known defences: {', '.join(DEFENCES.names())}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class VictimResult:
    """A trained victim and its clean-test retrieval figures.

    Attributes:
        model: the victim.
        metrics: ``i2t_r1 .. t2i_r10, mean_recall`` on the clean test split, with chance levels.
        seconds: victim training wall seconds.
        seed: the victim seed used.
        config: the victim config.
        method: the protector of its training data (``"clean"`` when unprotected).
    """

    model: DualEncoder
    metrics: list[MetricResult]
    seconds: float
    seed: int
    config: VictimConfig
    method: str

    def value(self, name: str) -> float:
        """One metric's value by name (e.g. ``"i2t_r1"``)."""
        return next(m.value for m in self.metrics if m.name == name)

    def record(self, extra: dict[str, Any] | None = None) -> RunRecord:
        """The run as a `RunRecord` (scenario ``"protect-victim"``)."""
        config = {**dataclasses.asdict(self.config), "seed": self.seed, **(extra or {})}
        config.pop("progress")
        return RunRecord("protect-victim", self.method, config, self.seed, self.metrics, self.seconds, versions())


def victim_seed(protected: ProtectedDataset | None, seed: int | None) -> int:
    """The victim seed: ``seed``, or the surrogate's seed + 1 (1 without a surrogate).

    Raises:
        ConfigError: ``seed`` equals the seed of the surrogate the protection was crafted on.
    """
    surrogate = protected.stats.get("surrogate_seed") if protected is not None else None
    if seed is None:
        return int(surrogate) + 1 if surrogate is not None else 1
    if surrogate is not None and seed == surrogate:
        raise ConfigError(
            f"victim seed {seed} is the surrogate's seed: the victim would start from the surrogate's initial "
            "weights; choose another --seed"
        )
    return seed


def victim_training_set(
    clean_train: MultimodalDataset, protected: ProtectedDataset | None, defence: str, seed: int
) -> MultimodalDataset:
    """What the victim trains on: the protected pairs (clean if ``protected`` is None) after the defence.

    Raises:
        DataError: the protection was computed for other data.
    """
    data = protected.apply(clean_train) if protected is not None else clean_train
    return DEFENCES.create(defence).prepare(data, clean_train, seed)


def train_victim(
    splits: DatasetSplits, protected: ProtectedDataset | None = None, config: VictimConfig | None = None
) -> VictimResult:
    """Train a fresh recipe model on the (protected) training split and evaluate it on the clean test split.

    Args:
        splits: the built-in dataset (its name selects the recipe).
        protected: the protection of ``splits.train``; None trains the clean reference victim.
        config: victim settings.

    Returns:
        The `VictimResult`.

    Raises:
        ConfigError: a victim seed equal to the surrogate's, or a dataset without a recipe.
        DataError: the protection does not match ``splits.train``.
    """
    config = config or VictimConfig()
    seed = victim_seed(protected, config.seed)
    recipe = recipe_for_data(splits)
    data = victim_training_set(splits.train, protected, config.defence, seed)
    arch = Recipe(recipe.model, recipe.train, {**recipe.model_config, "image_encoder": config.image_encoder})
    model = new_model(splits, seed, arch)
    overrides: dict[str, Any] = {"seed": seed, "progress": config.progress}
    if config.epochs is not None:
        overrides["epochs"] = config.epochs
    result = train_model(model, data, recipe.train.replace(**overrides))
    metrics = evaluate_dual_encoder(result.model, {"test": splits.test})
    method = protected.method if protected is not None else "clean"
    log.info("victim (%s, seed %d, %s) trained in %.1f s", method, seed, config.defence, result.seconds)
    return VictimResult(result.model, metrics, result.seconds, seed, config, method)
