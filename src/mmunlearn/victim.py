"""Victims: dual encoders trained on protected pairs, evaluated on clean test pairs.

A victim is what an unauthorised data user would train, in one of three regimes (docs/victims.md):

* ``scratch``: the dataset's own training recipe (`mmunlearn.recipes.RECIPES`) from a fresh model,
  optionally with another image tower (transfer);
* ``finetune``: the recipe model pretrained on another built-in caption set, its weights transferred to the
  target's vocabulary, then fine-tuned on the pairs with a small lr (the paper's fine-tuning setting); its
  record also carries the zero-shot figures of the transferred model (``zero_shot_<metric>``);
* ``hf-clip``: a random-initialised Hugging Face ``CLIPModel`` (ViT image tower) trained with the recipe.

Always with a seed different from the protector's surrogate and optionally a defence
(`mmunlearn.protectors.defences`). It is evaluated on the *clean* test split (no noise, no trigger):
image-to-text and text-to-image Recall@1/5/10 and their mean, each next to its chance level.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

from .data.core import MultimodalDataset
from .data.loading import load_dataset
from .data.store import DatasetSplits
from .errors import ConfigError
from .evaluate import evaluate_dual_encoder
from .models import DualEncoder
from .models.dual_encoder import IMAGE_ENCODERS
from .models.protocols import DualEncoderModel
from .protectors.defences import DEFENCES
from .protectors.protected import ProtectedDataset
from .recipes import Recipe, new_model, recipe_for_data
from .records.scenarios import ZERO_SHOT
from .results import MetricResult, RunRecord
from .train import TrainConfig, train_model
from .versions import versions
from .victim_models import FINETUNE_LR_SCALE, hf_clip_model, pretrain_model, pretrain_set, transfer_vocabulary

log = logging.getLogger(__name__)

REGIMES = ("scratch", "finetune", "hf-clip")
"""How a victim's model starts: fresh recipe model, pretrained on another set, or a Hugging Face CLIPModel."""


@dataclass(frozen=True)
class VictimConfig:
    """How the victim is trained.

    Attributes:
        seed: victim seed (initial weights, data order, defence draws; a ``finetune`` victim's pretraining
            too); None = the surrogate's seed + 1. It must differ from the surrogate's seed: the same seed
            would start the victim from the surrogate's initial weights.
        image_encoder: image tower (``"cnn"``, the recipe's, or ``"resnet"`` for transfer) of ``scratch`` and
            ``finetune`` (pretrained and fine-tuned with it); an ``hf-clip`` victim has its ViT and takes
            only ``"cnn"`` (the default).
        defence: a `DEFENCES` name.
        epochs: training epochs (``finetune``: of the fine-tuning); None = the dataset recipe's.
        progress: progress bar.
        regime: one of `REGIMES`; ``"scratch"`` is the behaviour of the library before regimes existed.
        pretrain: ``finetune`` only: the built-in caption set to pretrain on; None = the target's default
            (`mmunlearn.victim_models.PRETRAIN_SETS`).
        pretrain_epochs: ``finetune`` only: pretraining epochs; None = the pretraining set recipe's.
        pretrain_data_seed: ``finetune`` only: the data seed the pretraining set is built at; None = 0. With
            another seed than the target's, ``pretrain`` may be the target set itself (other pairs of the same
            generator: a model pretrained on data like the target's).
        lr: peak learning rate; None = the regime's default: the recipe's (``scratch``, ``hf-clip``: the
            recipe's step trains the small ViT too, docs/victims.md), the recipe's x `FINETUNE_LR_SCALE`
            (``finetune``).
    """

    seed: int | None = None
    image_encoder: str = "cnn"
    defence: str = "none"
    epochs: int | None = None
    progress: bool = True
    regime: str = "scratch"
    pretrain: str | None = None
    pretrain_epochs: int | None = None
    pretrain_data_seed: int | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"victim seed must be >= 0, got {self.seed}")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ConfigError(f"unknown image_encoder {self.image_encoder!r}; choose one of {sorted(IMAGE_ENCODERS)}")
        if self.defence not in DEFENCES:
            raise ConfigError(f"unknown defence {self.defence!r}; known defences: {', '.join(DEFENCES.names())}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        self._check_regime()

    def _check_regime(self) -> None:
        if self.regime not in REGIMES:
            raise ConfigError(f"unknown victim regime {self.regime!r}; choose one of {', '.join(REGIMES)}")
        pretraining = (self.pretrain, self.pretrain_epochs, self.pretrain_data_seed)
        if self.regime != "finetune" and any(v is not None for v in pretraining):
            raise ConfigError(
                f"pretrain, pretrain_epochs and pretrain_data_seed belong to the finetune regime, not {self.regime!r}"
            )
        if self.regime == "hf-clip" and self.image_encoder != "cnn":
            raise ConfigError(f"an hf-clip victim has a ViT image tower; image_encoder {self.image_encoder!r} is for "
                              "the scratch and finetune regimes")  # fmt: skip
        if self.pretrain_epochs is not None and self.pretrain_epochs < 1:
            raise ConfigError(f"pretrain_epochs must be >= 1, got {self.pretrain_epochs}")
        if self.pretrain_data_seed is not None and self.pretrain_data_seed < 0:
            raise ConfigError(f"pretrain_data_seed must be >= 0, got {self.pretrain_data_seed}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")

    def pretraining_data(self, target: str, target_seed: int) -> tuple[str, int]:
        """A ``finetune`` victim's pretraining set and its data seed, for the target set built at ``target_seed``.

        Raises:
            ConfigError: no default set for ``target``, or the target itself at its own data seed.
        """
        data_seed = self.pretrain_data_seed if self.pretrain_data_seed is not None else 0
        return pretrain_set(target, self.pretrain, data_seed, target_seed), data_seed


@dataclass
class VictimResult:
    """A trained victim and its clean-test retrieval figures.

    Attributes:
        model: the victim.
        metrics: ``i2t_r1 .. t2i_r10, mean_recall`` on the clean test split, with chance levels (``finetune``:
            then the same as ``zero_shot_<name>`` for the transferred model before fine-tuning).
        seconds: victim training wall seconds (``finetune``: the fine-tuning's).
        seed: the victim seed used.
        config: the victim config.
        method: the protector of its training data (``"clean"`` when unprotected).
        pretrain: the set a ``finetune`` victim was pretrained on (None in the other regimes).
        pretrain_seconds: its pretraining wall seconds (0 when it was given, or in the other regimes).
    """

    model: DualEncoderModel
    metrics: list[MetricResult]
    seconds: float
    seed: int
    config: VictimConfig
    method: str
    pretrain: str | None = None
    pretrain_seconds: float = 0.0

    def value(self, name: str) -> float:
        """One metric's value by name (e.g. ``"i2t_r1"``)."""
        return next(m.value for m in self.metrics if m.name == name)

    def record(self, extra: dict[str, Any] | None = None) -> RunRecord:
        """The run as a `RunRecord` (scenario ``"protect-victim"``; config with the regime and resolved pretrain
        set, extras with the pretraining seconds of a ``finetune`` victim)."""
        config = {**dataclasses.asdict(self.config), "seed": self.seed, "pretrain": self.pretrain, **(extra or {})}
        config.pop("progress")
        extras = {"pretrain_seconds": self.pretrain_seconds} if self.pretrain is not None else {}
        return RunRecord(
            "protect-victim", self.method, config, self.seed, self.metrics, self.seconds, versions(), extras
        )


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


def victim_recipe(recipe: Recipe, config: VictimConfig, seed: int) -> TrainConfig:
    """The victim's training recipe: the dataset recipe with the victim's seed, epochs and regime's lr."""
    changes: dict[str, Any] = {"seed": seed, "progress": config.progress}
    if config.epochs is not None:
        changes["epochs"] = config.epochs
    if config.lr is not None:
        changes["lr"] = config.lr
    elif config.regime == "finetune":
        changes["lr"] = recipe.train.lr * FINETUNE_LR_SCALE
    return recipe.train.replace(**changes)


def zero_shot(metrics: list[MetricResult]) -> list[MetricResult]:
    """The metrics renamed ``zero_shot_<name>``."""
    return [dataclasses.replace(m, name=ZERO_SHOT + m.name) for m in metrics]


def pretrained_victim(
    splits: DatasetSplits, config: VictimConfig, seed: int, data_dir: str | os.PathLike[str] | None = None
) -> tuple[DualEncoder, float]:
    """A ``finetune`` victim's pretrained model (the pretraining set at the target's size) and its seconds."""
    name, data_seed = config.pretraining_data(splits.name, splits.seed)
    source = load_dataset(name, splits.size, data_seed, data_dir)
    result = pretrain_model(source, seed, config.image_encoder, config.pretrain_epochs, progress=config.progress)
    assert isinstance(result.model, DualEncoder)
    return result.model, result.seconds


def victim_model(
    splits: DatasetSplits, config: VictimConfig, seed: int, pretrained: DualEncoder | None
) -> DualEncoderModel:
    """The model a victim starts from: the recipe's fresh one, the pretrained one transferred to the target's
    vocabulary, or a random-initialised CLIPModel."""
    if config.regime == "hf-clip":
        return hf_clip_model(splits, seed)
    recipe = recipe_for_data(splits)
    arch = Recipe(recipe.model, recipe.train, {**recipe.model_config, "image_encoder": config.image_encoder})
    model = new_model(splits, seed, arch)
    assert isinstance(model, DualEncoder)
    return transfer_vocabulary(pretrained, model) if pretrained is not None else model


def train_victim(
    splits: DatasetSplits,
    protected: ProtectedDataset | None = None,
    config: VictimConfig | None = None,
    *,
    pretrained: DualEncoder | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> VictimResult:
    """Train a victim on the (protected) training split and evaluate it on the clean test split.

    Args:
        splits: the built-in dataset (its name selects the recipe).
        protected: the protection of ``splits.train``; None trains the clean reference victim.
        config: victim settings.
        pretrained: ``finetune`` only: the pretrained model to start from (as `pretrained_victim` makes it;
            the bench shares one across cells); None pretrains one here. It is not changed.
        data_dir: dataset cache root of the pretraining set (``finetune`` without ``pretrained``).

    Returns:
        The `VictimResult`.

    Raises:
        ConfigError: a victim seed equal to the surrogate's, a dataset without a recipe, a pretrained model
            given to another regime, or one whose architecture does not match the target's.
        DataError: the protection does not match ``splits.train``.
    """
    config = config or VictimConfig()
    seed = victim_seed(protected, config.seed)
    if pretrained is not None and config.regime != "finetune":
        raise ConfigError(f"a pretrained model is for the finetune regime, not {config.regime!r}")
    recipe = recipe_for_data(splits)
    data = victim_training_set(splits.train, protected, config.defence, seed)
    pretrain_seconds = 0.0
    if config.regime == "finetune" and pretrained is None:
        pretrained, pretrain_seconds = pretrained_victim(splits, config, seed, data_dir)
    model = victim_model(splits, config, seed, pretrained)
    before = zero_shot(evaluate_dual_encoder(model, {"test": splits.test})) if pretrained is not None else []
    result = train_model(model, data, victim_recipe(recipe, config, seed))
    assert isinstance(result.model, DualEncoderModel)
    metrics = [*evaluate_dual_encoder(result.model, {"test": splits.test}), *before]
    method = protected.method if protected is not None else "clean"
    log.info("victim (%s, %s, seed %d, %s) trained in %.1f s", method, config.regime, seed, config.defence,
             result.seconds)  # fmt: skip
    source = config.pretraining_data(splits.name, splits.seed)[0] if config.regime == "finetune" else None
    return VictimResult(result.model, metrics, result.seconds, seed, config, method, source, pretrain_seconds)
