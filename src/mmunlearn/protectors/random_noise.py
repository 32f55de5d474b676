"""``random_noise``: uniform random noise in the same L-inf budget (the "is it just noise?" control)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..data.core import MultimodalDataset
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector
from .grouping import group_stats, tie_to_leaders
from .protected import noise_units


@dataclass(frozen=True)
class RandomNoiseConfig(ProtectConfig):
    """Random-noise settings.

    Attributes:
        epsilon: L-inf budget [8/255, same as MEM and EM].
        groups: None = one noise per image (per pair with one caption per image); k = one noise per
            group of a k-means partition of the images into k groups, formed as the min-min protectors
            form them, on the fresh surrogate of ``seed`` (the same groups as a grouped mem/em/trigger_only
            run of that seed without a passed surrogate): the fair control for grouped MEM.
        seed: seeds the noise (and the surrogate that forms the groups).
        progress: unused (generation is instant).
    """

    epsilon: float = 8 / 255
    groups: int | None = None


@PROTECTORS.register("random_noise")
class RandomNoise(Protector):
    """Per-image noise drawn uniformly from the 1/255 grid within ±epsilon, clipped to the pixel range.

    Captions of one image (``groups["image"]``) share the noise drawn for the image's first caption; with
    ``groups=k`` every row of a k-means group shares the noise drawn for the group's first row (stored
    unclipped, so every row of a group carries the same stored noise; the release clips to [0, 1]).
    """

    name: ClassVar[str] = "random_noise"
    paper: ClassVar[str] = "control used across the unlearnable-examples literature (e.g. Huang et al., ICLR 2021)"
    changes: ClassVar[tuple[str, ...]] = ("image",)
    Config: ClassVar[type[ProtectConfig]] = RandomNoiseConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Draw the noise (a dedicated generator seeded by ``config.seed``)."""
        units = noise_units(self.config.epsilon)  # type: ignore[attr-defined]
        gen = torch.Generator().manual_seed(self.config.seed)
        images = dataset.inputs["image"]
        noise = torch.randint(-units, units + 1, images.shape, generator=gen).float() / 255
        leaders = self.control_leaders(dataset)
        noise = tie_to_leaders(noise, leaders)
        if self.config.groups is None:  # type: ignore[attr-defined]
            return Generated(((images + noise).clamp(0, 1) - images), None)
        return Generated(noise, None, {"groups": group_stats(leaders)})  # type: ignore[arg-type]
