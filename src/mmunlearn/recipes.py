"""Per-dataset training recipes, and the one library call behind ``mmunlearn train``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint, read_manifest, save_checkpoint
from .data import LAYOUTS, DatasetRef, DatasetSplits
from .errors import ConfigError
from .evaluate import evaluate
from .models import MultimodalModel, build_model
from .models.hf import HFDualEncoder, splits_for_model
from .results import MetricResult
from .train import TrainConfig, TrainResult, train_model


@dataclass(frozen=True)
class Recipe:
    """How the original model of a dataset is trained.

    Attributes:
        model: model registry key.
        train: the training recipe (its seed is replaced by the run's seed).
        model_config: architecture overrides (input shapes, classes and vocabulary come from the data).
    """

    model: str
    train: TrainConfig
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)


# Chosen on the validation split (see README "Training recipes"): enough epochs that the classifier
# memorises its training images (membership becomes visible), while fused accuracy stays high.
RECIPES: dict[str, Recipe] = {
    "av-digits": Recipe(
        "multimodal-classifier",
        TrainConfig(epochs=15, batch_size=128, lr=2e-3),
        {"width": 8, "unimodal_weight": 1.0},
    ),
    # av-digits' recipe; the input shapes (video [T, C, H, W] and audio) come from the data.
    "av-digits-video": Recipe(
        "multimodal-classifier",
        TrainConfig(epochs=15, batch_size=128, lr=2e-3),
        {"width": 8, "unimodal_weight": 1.0},
    ),
    "shapes-captions": Recipe(
        "dual-encoder", TrainConfig(epochs=12, batch_size=128, lr=3e-3), {"width": 16, "embed_dim": 64}
    ),
    "emoji-captions": Recipe(
        "dual-encoder", TrainConfig(epochs=20, batch_size=128, lr=2e-3), {"width": 16, "embed_dim": 64}
    ),
    # Same architecture; emoji-captions' lr, shapes-captions' 12 epochs: on full the clean victim reaches mean
    # R@1 0.29 / 0.30 (data seeds 0 / 1), at the top of the paper-like 0.1-0.3 band; 20 epochs would overshoot it
    # and cost 5/3 as much (calibration in docs/datasets/scenes-captions.md).
    "scenes-captions": Recipe(
        "dual-encoder", TrainConfig(epochs=12, batch_size=128, lr=2e-3), {"width": 16, "embed_dim": 64}
    ),
}


# Other models a dataset can train instead of its default one (``recipe_for(dataset, model=...)``): a
# generative captioner of the caption sets. Chosen with one short run on shapes-captions/small (docs/captioner.md).
MODEL_RECIPES: dict[str, dict[str, Recipe]] = {
    "captioner": {
        "shapes-captions": Recipe("captioner", TrainConfig(epochs=60, batch_size=64, lr=2e-3), {}),
        "emoji-captions": Recipe("captioner", TrainConfig(epochs=60, batch_size=64, lr=2e-3), {}),
    },
}


def recipe_for(dataset: str, model: str | None = None) -> Recipe:
    """The recipe of a built-in dataset: its default model's (`RECIPES`), or with ``model`` (e.g.
    ``"captioner"``) that model's (`MODEL_RECIPES`). A `ConfigError` names the datasets that have one."""
    if model is not None and model != (RECIPES[dataset].model if dataset in RECIPES else None):
        known = MODEL_RECIPES.get(model, {})
        if dataset not in known:
            raise ConfigError(
                f"no {model!r} recipe for dataset {dataset!r}; {model!r} recipes exist for {sorted(known)}"
            )
        return known[dataset]
    if dataset not in RECIPES:
        raise ConfigError(f"no training recipe for dataset {dataset!r}; recipes exist for {sorted(RECIPES)}")
    return RECIPES[dataset]


def recipe_for_data(splits: DatasetSplits, model: str | None = None) -> Recipe:
    """The recipe of a built-in dataset, or for a dataset on disk the built-in recipe of its kind: an
    image-caption layout gets shapes-captions' dual encoder (or its ``model`` recipe), an audio-visual one
    av-digits' classifier (av-digits-video's when it has video)."""
    kind = splits.meta.get("kind") if isinstance(splits.meta, dict) else None
    if kind == "image-caption":
        return recipe_for("shapes-captions", model)
    if kind == "audio-visual":
        return RECIPES["av-digits-video" if "video" in splits.train.modalities else "av-digits"]
    return recipe_for(splits.name, model)


def recipe_for_layout(layout: str, model: str | None = None, video: bool = False) -> Recipe:
    """The recipe `recipe_for_data` picks for a dataset on disk, from its layout alone (no loading): an
    image-caption layout gets shapes-captions' (or its ``model`` recipe), an audio-visual one av-digits'
    classifier, av-digits-video's when the data has the ``video`` modality (``video``: known from the
    layout's annotations, e.g. ``Plan.items[i].video``).

    Raises:
        UnknownNameError: an unknown layout (the known ones are listed).
        ConfigError: a ``model`` with no recipe for the layout's kind.
    """
    if LAYOUTS.create(layout).kind == "image-caption":
        return recipe_for("shapes-captions", model)
    return recipe_for("av-digits-video" if video else "av-digits", model)


def model_config_for(splits: DatasetSplits, recipe: Recipe) -> dict[str, Any]:
    """Constructor keywords of the recipe's model for this data (shapes, classes, vocabulary)."""
    train = splits.train
    if recipe.model == "multimodal-classifier":
        shapes = {m: list(train.inputs[m].shape[1:]) for m in train.modalities}
        return {"input_shapes": shapes, "num_classes": train.num_classes, **recipe.model_config}
    return {
        "image_shape": list(train.inputs["image"].shape[1:]),
        "vocab": list(splits.vocab or []),
        "text_len": splits.text_len,
        **recipe.model_config,
    }


def new_model(splits: DatasetSplits, seed: int, recipe: Recipe | None = None) -> MultimodalModel:
    """A freshly initialised model of the dataset's recipe, with weights drawn from ``seed``."""
    recipe = recipe or recipe_for_data(splits)
    return build_model(recipe.model, seed, **model_config_for(splits, recipe))


def train_on_dataset(
    dataset: str,
    out_dir: str | os.PathLike[str],
    *,
    size: str = "small",
    seed: int = 0,
    data_seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    layout: str | None = None,
    init: str | os.PathLike[str] | None = None,
    model: str | None = None,
) -> tuple[TrainResult, list[MetricResult]]:
    """Load (building or decoding if needed) a dataset, train its recipe's model, save it, evaluate it.

    Args:
        dataset: built-in dataset name, or with ``layout`` the path of a dataset on disk.
        out_dir: checkpoint folder (an unfinished run there is resumed).
        size: ``"small"`` or ``"full"`` (built-in sets).
        seed: training seed (initial weights, data order).
        data_seed: dataset generation seed (built-in sets), or the split seed (on disk).
        data_dir: dataset cache root.
        overrides: `TrainConfig` fields to change (e.g. ``{"epochs": 3}``); unknown keys are errors.
        device: where to train.
        progress: progress bars.
        layout: the published layout of a dataset on disk (see `mmunlearn.data.LAYOUTS`).
        init: a model folder to train from instead of the recipe's fresh model: one of our checkpoints or
            a Hugging Face ``save_pretrained`` folder (CLIP, SigLIP, CLAP), whose text is re-encoded in the
            model's own vocabulary. Its weights are trained as they are (random or pretrained).
        model: train this model's recipe instead of the dataset's default one (``"captioner"``; see
            `recipe_for`); a captioner is evaluated by BLEU-4 and CIDEr of its generated captions.

    Returns:
        The training result and the train/val/test metrics of the final model.
    """
    ref = DatasetRef.of(dataset, size, data_seed, layout)
    return train_on_ref(ref, out_dir, seed=seed, data_dir=data_dir, overrides=overrides, device=device,
                        progress=progress, init=init, model=model)  # fmt: skip


def train_on_ref(
    ref: DatasetRef,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    init: str | os.PathLike[str] | None = None,
    model: str | None = None,
) -> tuple[TrainResult, list[MetricResult]]:
    """`train_on_dataset` on the data ``ref`` loads (a bench's `DatasetRef`, decoding options included)."""
    splits = ref.load(data_dir, progress=progress)
    recipe = recipe_for_data(splits, model)
    config = recipe.train.replace(seed=seed, progress=progress, **(overrides or {}))
    if init is None:
        net: Any = new_model(splits, seed, recipe)
    else:
        net = load_checkpoint(init).model
        if isinstance(net, HFDualEncoder):
            splits = splits_for_model(splits, net)
    init_prov = {"init": str(Path(init).resolve())} if init is not None else {}
    provenance = {**ref.provenance(), "train": config.identity(), **init_prov}
    result = train_model(net, splits.train, config, out_dir=out_dir, provenance=provenance, device=device)
    scored = {"train": splits.train, "val": splits.val, "test": splits.test}
    trained = result.model
    metrics = evaluate(trained, scored)
    save_checkpoint(
        Path(out_dir),
        result.model,
        provenance=provenance,
        extra={"training": read_manifest(out_dir).get("training"), "metrics": [m.to_dict() for m in metrics]},
    )
    return result, metrics
