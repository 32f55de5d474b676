"""The models of the three victim regimes (see docs/victims.md): pretraining and vocabulary transfer for
``finetune``, a random-initialised Hugging Face ``CLIPModel`` for ``hf-clip``.

``scratch`` needs nothing here: it is the dataset recipe's fresh `DualEncoder` (`mmunlearn.recipes.new_model`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from .data.store import DatasetSplits
from .errors import ConfigError
from .models import DualEncoder
from .models.hf import HFDualEncoder
from .recipes import Recipe, new_model, recipe_for_data
from .train import TrainResult, train_model

PRETRAIN_SETS: dict[str, str] = {
    "shapes-captions": "scenes-captions",  # scenes-captions names shapes-captions' shapes and colours
    "emoji-captions": "shapes-captions",
    "scenes-captions": "shapes-captions",  # it reuses shapes-captions' shape and colour words
}
"""The built-in caption set a ``finetune`` victim is pretrained on, by target set (chosen here: another
built-in set, so that the pretrained model has seen images and words, but not the target's pairs; the set
that shares the most words where there is a choice: emoji-captions shares 9 of shapes-captions' 20
vocabulary entries, and a model pretrained on it is at chance zero-shot on shapes-captions)."""

FINETUNE_LR_SCALE = 0.1
"""Fine-tuning lr = the target recipe's lr x this. The paper fine-tunes a pretrained CLIP with a small lr for
a few epochs; one tenth of the from-scratch peak is the usual fine-tuning step (chosen here; measured in
docs/victims.md)."""


def pretrain_set(target: str, chosen: str | None, data_seed: int | None = None, target_seed: int = 0) -> str:
    """The set to pretrain on: ``chosen``, or the default of ``target`` (`PRETRAIN_SETS`).

    The target set itself is allowed only at another data seed (``data_seed`` != ``target_seed``): pairs drawn
    from the same generator, none of them the target's (a model pretrained on data like the target's, as a
    web-pretrained CLIP has seen images like Flickr8K's).

    Raises:
        ConfigError: no default for ``target``, or ``chosen`` is the target itself at the target's data seed.
    """
    if chosen is None:
        if target not in PRETRAIN_SETS:
            raise ConfigError(
                f"no default pretraining set for {target!r} (defaults exist for {sorted(PRETRAIN_SETS)}); set pretrain"
            )
        return PRETRAIN_SETS[target]
    if chosen == target and (data_seed is None or data_seed == target_seed):
        raise ConfigError(
            f"pretraining on the target {target!r} itself needs pretrain_data_seed other than the target's data "
            f"seed {target_seed} (the same pairs would be the target's)"
        )
    return chosen


def pretrain_model(
    splits: DatasetSplits,
    seed: int,
    image_encoder: str = "cnn",
    epochs: int | None = None,
    *,
    progress: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train the pretraining set's recipe model on its training split (the model a ``finetune`` victim starts from).

    Args:
        splits: the pretraining set.
        seed: initial weights and data order (the victim's seed).
        image_encoder: image tower (the victim's).
        epochs: None = the pretraining set recipe's.
        progress: progress bar.
        out_dir: a resumable checkpoint folder (the bench keeps one pretrained model per set, size and seed).
    """
    recipe = recipe_for_data(splits)
    arch = Recipe(recipe.model, recipe.train, {**recipe.model_config, "image_encoder": image_encoder})
    model = new_model(splits, seed, arch)
    changes: dict[str, Any] = {"seed": seed, "progress": progress}
    if epochs is not None:
        changes["epochs"] = epochs
    return train_model(model, splits.train, recipe.train.replace(**changes), out_dir=out_dir)


ARCH_FIELDS = ("image_shape", "embed_dim", "width", "text_dim", "text_layers", "image_encoder")
"""`DualEncoderConfig` fields that must agree for a transfer (vocabulary and text length may differ)."""


def transfer_vocabulary(pretrained: DualEncoder, fresh: DualEncoder) -> DualEncoder:
    """``fresh`` (a seeded model of the target's vocabulary) given every weight of ``pretrained``.

    The token table takes the pretrained row of every word the two vocabularies share (by string); the
    position table its first rows (as many as both have); words and positions the pretrained model lacks keep
    ``fresh``'s initial values. Every other tensor is copied. ``pretrained`` is not changed.

    Raises:
        ConfigError: the two architectures differ beyond vocabulary and text length.
    """
    old, new = pretrained.config, fresh.config
    differ = [f for f in ARCH_FIELDS if tuple(_tuple(getattr(old, f))) != tuple(_tuple(getattr(new, f)))]
    if differ:
        pairs = ", ".join(f"{f} {getattr(old, f)!r} vs {getattr(new, f)!r}" for f in differ)
        raise ConfigError(f"cannot fine-tune across architectures: the pretrained and target models differ in {pairs}")
    source, state = pretrained.state_dict(), fresh.state_dict()
    out = {}
    for key, value in state.items():
        if key == "text_encoder.token.weight":
            out[key] = shared_rows(source[key], list(old.vocab), value, list(new.vocab))
        elif key == "text_encoder.pos":
            out[key] = value.clone()
            rows = min(len(value), len(source[key]))
            out[key][:rows] = source[key][:rows]
        else:
            out[key] = source[key].clone()
    fresh.load_state_dict(out)
    return fresh


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def shared_rows(
    source: torch.Tensor, source_vocab: list[str], target: torch.Tensor, target_vocab: list[str]
) -> torch.Tensor:
    """A copy of ``target`` (one row per word of ``target_vocab``) whose rows of words also in ``source_vocab``
    are ``source``'s rows of those words."""
    index = {word: i for i, word in enumerate(source_vocab)}
    pairs = [(j, index[w]) for j, w in enumerate(target_vocab) if w in index]
    out = target.clone()
    if pairs:
        to, frm = torch.tensor(pairs).T
        out[to] = source[frm].to(out.dtype)
    return out


@dataclass(frozen=True)
class HFClipArch:
    """A small random-initialised ``CLIPModel`` for the caption sets' 32x32 images (chosen here: about the
    size of the recipes' dual encoder, a ViT whose 4x4 patches give an 8x8 grid of 64 tokens).

    Attributes:
        patch_size: ViT patch side (must divide the image side).
        hidden: width of both towers.
        layers: transformer layers of each tower.
        heads: attention heads of each tower.
        embed_dim: the shared embedding size (the recipes' ``embed_dim``).
        init_temperature: initial softmax temperature (CLIP: 0.07).
    """

    patch_size: int = 4
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    embed_dim: int = 64
    init_temperature: float = 0.07

    def __post_init__(self) -> None:
        if min(self.patch_size, self.hidden, self.layers, self.heads, self.embed_dim) < 1:
            raise ConfigError("HFClipArch sizes must be >= 1")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden {self.hidden} must be a multiple of heads {self.heads}")


def hf_clip_config(splits: DatasetSplits, arch: HFClipArch = HFClipArch()) -> dict[str, Any]:
    """`HFDualEncoderConfig` fields of a ``CLIPModel`` over the dataset's images and word vocabulary.

    The text tower's ids are the dataset's word ids (0 = ``[PAD]``, 1 = ``[UNK]``, 2.. the words); begin- and
    end-of-text are two extra ids after the vocabulary, so every row (trigger included) reaches the model
    as it is and HotFlip or triggers never meet them. Positions: a full row plus the two framing tokens.
    Images are normalised with mean = std = 0.5 inside the model (any affine map is learnable from scratch;
    the pixel budget of a protection stays in pixel units).

    Raises:
        ConfigError: no vocabulary, or images that are not square, 1- or 3-channel, or a multiple of the patch.
    """
    if not splits.vocab or splits.text_len is None:
        raise ConfigError(f"dataset {splits.name!r} has no word vocabulary for a CLIP text tower")
    channels, height, width = tuple(splits.train.inputs["image"].shape[1:])
    if height != width or height % arch.patch_size or channels not in (1, 3):
        raise ConfigError(
            f"an hf-clip victim needs square 1- or 3-channel images whose side is a multiple of the patch "
            f"{arch.patch_size}; got {channels}x{height}x{width}"
        )
    words = len(splits.vocab)
    bos, eos = words, words + 1
    tower = {"hidden_size": arch.hidden, "intermediate_size": 4 * arch.hidden, "num_hidden_layers": arch.layers,
             "num_attention_heads": arch.heads}  # fmt: skip
    text = {**tower, "vocab_size": words + 2, "max_position_embeddings": splits.text_len + 2,
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": 0}  # fmt: skip
    vision = {**tower, "image_size": height, "patch_size": arch.patch_size, "num_channels": 3}
    hf_config = {
        "model_type": "clip",
        "text_config": text,
        "vision_config": vision,
        "projection_dim": arch.embed_dim,
        "logit_scale_init_value": math.log(1.0 / arch.init_temperature),
    }
    return {
        "hf_config": hf_config, "image_role": "image", "vocab_size": words, "eos_id": eos, "pad_id": 0,
        "bos_id": bos, "image_size": (height, width), "resize": "exact", "interpolation": "bilinear",
        "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5),
    }  # fmt: skip


def hf_clip_model(splits: DatasetSplits, seed: int, arch: HFClipArch = HFClipArch()) -> HFDualEncoder:
    """A random-initialised `HFDualEncoder` (``CLIPModel``) of `hf_clip_config`, its weights drawn from ``seed``
    (the global generator is left as it was)."""
    config = hf_clip_config(splits, arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HFDualEncoder(**config)
