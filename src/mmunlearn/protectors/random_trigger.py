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
from .grouping import image_leaders, tie_to_leaders
from .protected import FIRST_WORD_ID


@dataclass(frozen=True)
class RandomTriggerConfig(ProtectConfig):
    """Random-trigger settings.

    Attributes:
        trigger_len: tokens per trigger [3, as MEM-3].
        seed: seeds the tokens.
        progress: unused (generation is instant).
    """

    trigger_len: int = 3


@PROTECTORS.register("random_trigger")
class RandomTrigger(Protector):
    """Per-image triggers drawn uniformly from the real words (never [PAD] or [UNK]).

    Captions of one image (``groups["image"]``) share the trigger drawn for the image's first caption.
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
        return Generated(None, tie_to_leaders(drawn, image_leaders(dataset)))
