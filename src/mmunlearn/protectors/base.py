"""The `Protector` base, its config validation and the ``protector`` registry.

A protector turns clean image-caption pairs into a `ProtectedDataset`: per-pair image noise within an
L-inf budget and/or a per-pair text trigger. Subclasses set the class attributes, declare a frozen
``Config`` dataclass (defaults documented with their source) and implement `Protector.generate`; the
base validates every input before work starts, seeds every random draw, times the run and packs the
result.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..configs import make_config
from ..data.core import MultimodalDataset
from ..errors import ConfigError, DataError
from ..models import DualEncoder, build_model
from ..models.protocols import DualEncoderModel, require
from ..optim import check_lr
from ..registry import Registry
from ..runtime import seeded
from .grouping import check_group_count, row_leaders
from .minmin import checkpointing
from .protected import FIRST_WORD_ID, ProtectedDataset, dataset_source, noise_units, quantize_noise, trigger_budget

log = logging.getLogger(__name__)

SURROGATE_ARCH: dict[str, Any] = {"width": 16, "embed_dim": 64}
"""Architecture of a fresh surrogate: the caption recipes' dual encoder (see `mmunlearn.recipes`)."""


def _positive_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_epsilon(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= 1:
        raise ConfigError(
            f"epsilon must be in (0, 1] (pixel units, e.g. 8/255 = {8 / 255:.4f}), got {value!r}; "
            "for a budget in 0..255 units divide it by 255"
        )
    if noise_units(float(value)) < 1:
        raise ConfigError(f"epsilon {value!r} is below 1/255: noise is stored in steps of 1/255, so it would be zero")


def _check_groups(value: Any) -> None:
    if value is not None:
        _positive_int("groups", value, 1)


def _check_positive_float(name: str, value: Any) -> None:
    if name == "lr":
        check_lr(value)  # also bounded: see `mmunlearn.optim.MAX_LR`
    elif isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


_INT_MINIMUMS = {
    "pgd_steps": 1,
    "outer_iters": 1,
    "surrogate_steps": 0,
    "trigger_len": 1,
    "hotflip_candidates": 1,
    "trigger_iters": 0,
    "batch_size": 2,
    "seed": 0,
}
"""Integer fields any protector config may have, with their smallest valid value (InfoNCE needs 2 pairs)."""


@dataclass(frozen=True)
class ProtectConfig:
    """Fields every protector has (methods extend this dataclass; shared field names share validation).

    Attributes:
        seed: seeds the surrogate's initial weights and every random draw (noise, triggers, order).
        progress: show a progress bar (only on a terminal).
    """

    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        values = dataclasses.asdict(self)
        for name, minimum in _INT_MINIMUMS.items():
            if name in values:
                _positive_int(name, values[name], minimum)
        if "epsilon" in values:
            _check_epsilon(values["epsilon"])
        if "groups" in values:
            _check_groups(values["groups"])  # None (sample-wise) or >= 1; the upper bound needs the data
        for name in ("step", "lr"):
            if name in values:
                _check_positive_float(name, values[name])
        if "trigger_iters" in values and values["trigger_iters"] > values.get("outer_iters", math.inf):
            raise ConfigError(
                f"trigger_iters ({values['trigger_iters']}) cannot exceed outer_iters ({values['outer_iters']})"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the progress display excluded: it does not change the result)."""
        d = dataclasses.asdict(self)
        d.pop("progress")
        return d


@dataclass
class Generated:
    """What `Protector.generate` returns.

    Attributes:
        noise: float (N, C, H, W) perturbation in pixel units within epsilon, or None.
        triggers: int64 (N, k) trigger ids, or None.
        stats: JSON-ready figures about the run (losses per outer iteration, stop reason...).
    """

    noise: Tensor | None = None
    triggers: Tensor | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class Protector:
    """Base of every data-protection generator (subclass, set the class attributes, register in `PROTECTORS`).

    Attributes:
        name: registry key (= file name).
        paper: citation of the method.
        changes: the modalities it perturbs (``"image"``: noise, ``"text"``: triggers).
        supported_data: modalities a dataset must carry.
        uses_surrogate: whether it trains a surrogate model (so victims must use another seed).
        stage: the intervention stage of the survey (protectors act on the data).
        requires: the model protocols a surrogate must satisfy.
        Config: its frozen config dataclass.
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    changes: ClassVar[tuple[str, ...]] = ()
    supported_data: ClassVar[tuple[str, ...]] = ("image", "text")
    uses_surrogate: ClassVar[bool] = False
    stage: ClassVar[str] = "data-side"
    requires: ClassVar[tuple[type, ...]] = (DualEncoderModel,)
    Config: ClassVar[type[ProtectConfig]] = ProtectConfig

    def __init__(self, **overrides: Any) -> None:
        self.config = make_config(self.Config, overrides)

    def protect(
        self,
        dataset: MultimodalDataset,
        surrogate: DualEncoder | None = None,
        work_dir: str | os.PathLike[str] | None = None,
    ) -> ProtectedDataset:
        """Compute the protection of every pair of ``dataset``.

        Args:
            dataset: clean image-caption pairs: ``image`` float (N, C, H, W) in [0, 1], ``text`` int64
                (N, L) left-aligned ids with room for the trigger, and a vocabulary.
            surrogate: the model to craft against (copied, never modified). None: a fresh dual encoder
                (`SURROGATE_ARCH`) initialised from ``config.seed``, as in MEM's main setting.
            work_dir: the min-min protectors save their state there after every outer iteration and
                resume the same run found there, bit-identically (`mmunlearn.protectors.minmin`); the
                folder is left in place for the caller to delete once the protection is saved. Methods
                without an iterative loop ignore it.

        Returns:
            The `ProtectedDataset` (its ``stats`` hold the wall seconds and the generator's figures).

        Raises:
            DataError: the dataset lacks a modality, is too small, has values out of range, or its
                captions have no room for the trigger.
            ConfigError: a surrogate that does not fit the dataset, or ``groups`` above its number of images.
            CheckpointError: ``work_dir`` holds something other than this kind of work, or a damaged state.
        """
        self.validate(dataset, surrogate)
        t0 = time.perf_counter()
        with seeded(self.config.seed), checkpointing(work_dir):
            model = self.surrogate_for(dataset, surrogate) if self.uses_surrogate else None
            out = self.generate(dataset, model)
        seconds = time.perf_counter() - t0
        eps = getattr(self.config, "epsilon", None) if out.noise is not None else None
        noise = quantize_noise(out.noise, eps) if out.noise is not None and eps is not None else None
        log.info("%s protected %d pairs in %.1f s", self.name, len(dataset), seconds)
        return ProtectedDataset(
            ids=list(dataset.ids),
            noise=noise,
            triggers=out.triggers,
            epsilon=eps,
            method=self.name,
            config=self.config.to_dict(),
            source=dataset_source(dataset),
            stats={
                "seconds": seconds,
                "surrogate_seed": self.config.seed if self.uses_surrogate else None,
                **out.stats,
            },
        )

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """The method itself (called with the global RNG seeded by ``config.seed``)."""
        raise NotImplementedError

    # -- validation ---------------------------------------------------------------------------------
    def validate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> None:
        """Check the dataset (and surrogate) before any work starts.

        Raises:
            DataError / ConfigError: see `protect`; also ConfigError when a grouped protector's ``groups``
                exceeds the number of distinct images.
        """
        missing = [m for m in self.supported_data if m not in dataset.inputs]
        if missing:
            raise DataError(f"{self.name} needs {list(self.supported_data)}; dataset {dataset.name!r} lacks {missing}")
        if len(dataset) < 2:
            raise DataError(f"{self.name} needs at least 2 pairs (a contrastive batch), got {len(dataset)}")
        images, text = dataset.inputs["image"], dataset.inputs["text"]
        if images.dim() != 4 or not images.is_floating_point():
            raise DataError(f"images must be float (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if not bool(torch.isfinite(images).all()):
            raise DataError(f"the images of dataset {dataset.name!r} contain NaN or inf values")
        if float(images.min()) < 0 or float(images.max()) > 1:
            raise DataError(f"images must lie in [0, 1], got [{float(images.min()):.3f}, {float(images.max()):.3f}]")
        if text.dtype != torch.int64 or text.dim() != 2:
            raise DataError(f"text must be int64 (N, L) token ids, got {text.dtype} {tuple(text.shape)}")
        self._validate_trigger_room(dataset)
        check_group_count(getattr(self.config, "groups", None), dataset)
        if surrogate is not None:
            self._validate_surrogate(dataset, surrogate)

    def _validate_trigger_room(self, dataset: MultimodalDataset) -> None:
        k = getattr(self.config, "trigger_len", 0)
        if "text" not in self.changes or not k:
            return
        budget = trigger_budget(dataset.inputs["text"])
        if k > budget:
            raise DataError(
                f"trigger_len {k} does not fit dataset {dataset.name!r}: its longest caption leaves {budget} free "
                f"token position(s); use trigger_len <= {budget}"
            )
        vocab = vocab_size(dataset)
        if vocab <= FIRST_WORD_ID:
            raise DataError(f"dataset {dataset.name!r} has no real words to build triggers from")

    def _validate_surrogate(self, dataset: MultimodalDataset, surrogate: DualEncoder) -> None:
        require(surrogate, self.requires, f"protector {self.name!r} (its surrogate)")
        if not isinstance(surrogate, DualEncoder):
            return
        c = surrogate.config
        if tuple(c.image_shape) != tuple(dataset.inputs["image"].shape[1:]):
            raise ConfigError(f"surrogate image shape {tuple(c.image_shape)} does not fit the dataset's images")
        if dataset.vocab is not None and list(c.vocab) != list(dataset.vocab):
            raise ConfigError("the surrogate's vocabulary differs from the dataset's")
        if c.text_len < dataset.inputs["text"].shape[1]:
            raise ConfigError(f"surrogate text_len {c.text_len} is shorter than the dataset's rows")

    def control_leaders(self, dataset: MultimodalDataset) -> Tensor | None:
        """The rows that share one random draw in a control protector: the captions of one image, or with
        ``groups=k`` the k-means groups the min-min protectors form on the fresh surrogate of ``seed`` (so a
        grouped control has the groups of the grouped run it controls for)."""
        groups = getattr(self.config, "groups", None)
        model = self.surrogate_for(dataset, None) if groups is not None else None
        return row_leaders(dataset, model, groups, self.config.seed)

    # -- surrogate ----------------------------------------------------------------------------------
    def surrogate_for(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> DualEncoder:
        """A private copy of ``surrogate``, or a fresh `SURROGATE_ARCH` dual encoder seeded by ``config.seed``."""
        if surrogate is not None:
            return copy.deepcopy(surrogate)
        if dataset.vocab is None:
            raise DataError(f"dataset {dataset.name!r} has no vocabulary: pass a surrogate model")
        return build_model(  # type: ignore[return-value]
            "dual-encoder",
            self.config.seed,
            image_shape=list(dataset.inputs["image"].shape[1:]),
            vocab=list(dataset.vocab),
            text_len=int(dataset.inputs["text"].shape[1]),
            **SURROGATE_ARCH,
        )


def vocab_size(dataset: MultimodalDataset) -> int:
    """Number of token ids: the vocabulary's size, else one past the largest id in the captions."""
    if dataset.vocab is not None:
        return len(dataset.vocab)
    return int(dataset.inputs["text"].max()) + 1


PROTECTORS: Registry[Protector] = Registry("protector")
"""Every data-protection generator by name (``mmunlearn list`` shows them)."""
