"""``trigger_only``: MEM's text half alone: a per-pair HotFlip trigger against a surrogate, no noise.

The ablation that tells how much of MEM's effect comes from the text channel. See
docs/methods/trigger_only.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..data.core import MultimodalDataset
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector, vocab_size
from .minmin import grouping_stats, run_min_min, settings_from


@dataclass(frozen=True)
class TriggerOnlyConfig(ProtectConfig):
    """Trigger-only settings (MEM's trigger search, run in every outer iteration).

    Attributes:
        trigger_len: trigger tokens per caption [3, as MEM-3].
        hotflip_candidates: candidates per position re-scored exactly [16, MEM code].
        outer_iters: outer iterations.
        surrogate_steps: surrogate steps per outer iteration.
        trigger_iters: HotFlip in the first this many outer iterations (default: all of them).
        batch_size: pairs per batch.
        lr: surrogate learning rate.
        groups: None = sample-wise (one per pair; per image when an image has several captions);
            k = one trigger per group of a k-means partition of the images into k groups (L2-normalised
            image embeddings of the surrogate before training; Unlearnable Clusters, arXiv 2301.01217; the
            MEM code's class-wise variant draws the groups at random instead). At most the number of
            distinct images (checked at `protect`). See docs/methods/mem.md, "Grouped protection".
        seed: surrogate initialisation, trigger initialisation and data order.
        progress: progress bar.
    """

    trigger_len: int = 3
    hotflip_candidates: int = 16
    outer_iters: int = 6
    surrogate_steps: int = 80
    trigger_iters: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    groups: int | None = None


@PROTECTORS.register("trigger_only")
class TriggerOnly(Protector):
    """Per-pair HotFlip text triggers; images untouched."""

    name: ClassVar[str] = "trigger_only"
    paper: ClassVar[str] = "ablation of MEM (arXiv 2407.16307): the text trigger without image noise"
    changes: ClassVar[tuple[str, ...]] = ("text",)
    uses_surrogate: ClassVar[bool] = True
    Config: ClassVar[type[ProtectConfig]] = TriggerOnlyConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Run the min-min loop with triggers only."""
        settings = settings_from(self.config, epsilon=None)
        state = run_min_min(dataset, surrogate, settings, vocab_size(dataset), desc=self.name)  # type: ignore[arg-type]
        return Generated(None, state.triggers, {"history": state.history, **grouping_stats(self.config, state)})
