"""``random_trigger``: a per-pair trigger of uniformly random real words, no search, no noise.

The control for the text channel, as `random_noise` is for the image channel: it separates what a
prepended trigger does by itself (the victim's text encoder meets caption words at shifted positions
during training and unshifted at test time) from what MEM's HotFlip search and noise add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..data.core import MultimodalDataset
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector, vocab_size
from .grouping import group_stats, tie_to_leaders
from .protected import FIRST_WORD_ID


@dataclass(frozen=True)
class RandomTriggerConfig(ProtectConfig):
    """Random-trigger settings.

    Attributes:
        trigger_len: tokens per trigger [3, as MEM-3].
        groups: None = one trigger per image (per pair with one caption per image); k = one trigger per
            group of a k-means partition of the images into k groups, formed as the min-min protectors
            form them, on the fresh surrogate of ``seed`` (the same groups as a grouped mem/em/trigger_only
            run of that seed without a passed surrogate): the fair control for grouped MEM.
        seed: seeds the tokens (and the surrogate that forms the groups).
        progress: unused (generation is instant).
    """

    trigger_len: int = 3
    groups: int | None = None


@PROTECTORS.register("random_trigger")
class RandomTrigger(Protector):
    """Per-image triggers drawn uniformly from the real words (never [PAD] or [UNK]).

    Captions of one image (``groups["image"]``) share the trigger drawn for the image's first caption; with
    ``groups=k`` every row of a k-means group shares the trigger drawn for the group's first row.
    """

    name: ClassVar[str] = "random_trigger"
    paper: ClassVar[str] = "control for the text trigger of MEM (arXiv 2407.16307), as MEM's random initialisation"
    changes: ClassVar[tuple[str, ...]] = ("text",)
    Config: ClassVar[type[ProtectConfig]] = RandomTriggerConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Draw the tokens (a dedicated generator seeded by ``config.seed``)."""
        gen = torch.Generator().manual_seed(self.config.seed)
        k = self.config.trigger_len  # type: ignore[attr-defined]
        drawn = torch.randint(FIRST_WORD_ID, vocab_size(dataset), (len(dataset), k), generator=gen)
        leaders = self.control_leaders(dataset)
        stats = {} if self.config.groups is None else {"groups": group_stats(leaders)}  # type: ignore[attr-defined,arg-type]
        return Generated(None, tie_to_leaders(drawn, leaders), stats)
