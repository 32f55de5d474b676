"""``mem``: Multi-step Error Minimization (Liu et al., ACM MM 2024, arXiv 2407.16307).

Bi-level min-min against a CLIP-style surrogate trained from scratch: each outer iteration trains the
surrogate a few steps on the currently protected pairs, then makes one pass over the data in which
every batch gets a HotFlip update of its per-pair text triggers (first ``trigger_iters`` iterations
only) and PGD steps that *minimise* the CLIP loss over its per-pair image noise, with the caption
bodies shuffled within the batch at every PGD step so that the noise binds to the trigger rather than
to the caption. See docs/methods/mem.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..data.core import MultimodalDataset
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector, vocab_size
from .minmin import grouping_stats, run_min_min, settings_from


@dataclass(frozen=True)
class MEMConfig(ProtectConfig):
    """MEM settings. Paper/code values in brackets; the defaults are scaled down for 2 CPU cores.

    Attributes:
        epsilon: L-inf noise budget in pixel units [8/255, paper and code].
        step: PGD step [1/255, code].
        pgd_steps: PGD steps per batch per pass [8, code].
        outer_iters: outer iterations [20, code].
        surrogate_steps: surrogate training steps per outer iteration [200, code].
        trigger_len: trigger tokens per caption [3 or 5, paper: MEM-3 / MEM-5].
        hotflip_candidates: candidates per position re-scored exactly [16, code].
        trigger_iters: HotFlip in the first this many outer iterations [5 of 20, code].
        batch_size: pairs per batch [128, code].
        lr: surrogate AdamW learning rate, constant [1e-4 for RN50 in the code; a tiny model from
            scratch needs more: 2e-3 is the caption recipes' peak].
        shuffle_captions: permute caption bodies at every PGD step [yes, paper and code].
        groups: None = sample-wise (one per pair; per image when an image has several captions);
            k = one noise and one trigger per group of a k-means partition of the images into k groups (L2-normalised
            image embeddings of the surrogate before training; Unlearnable Clusters, arXiv 2301.01217; the
            MEM code's class-wise variant draws the groups at random instead). At most the number of
            distinct images (checked at `protect`). See docs/methods/mem.md, "Grouped protection".
        seed: surrogate initialisation and every random draw.
        progress: progress bar.
    """

    epsilon: float = 8 / 255
    step: float = 1 / 255
    pgd_steps: int = 5
    outer_iters: int = 6
    surrogate_steps: int = 80
    trigger_len: int = 3
    hotflip_candidates: int = 16
    trigger_iters: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    shuffle_captions: bool = True
    groups: int | None = None


@PROTECTORS.register("mem")
class MEM(Protector):
    """Per-pair error-minimising image noise plus a per-pair HotFlip text trigger, optimised together."""

    name: ClassVar[str] = "mem"
    paper: ClassVar[str] = (
        "Liu et al., Multimodal Unlearnable Examples: Protecting Data against Multimodal Contrastive "
        "Learning, ACM MM 2024 (arXiv 2407.16307)"
    )
    changes: ClassVar[tuple[str, ...]] = ("image", "text")
    uses_surrogate: ClassVar[bool] = True
    Config: ClassVar[type[ProtectConfig]] = MEMConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Run the min-min loop (see `mmunlearn.protectors.minmin`)."""
        settings = settings_from(self.config)
        state = run_min_min(dataset, surrogate, settings, vocab_size(dataset), desc=self.name)  # type: ignore[arg-type]
        stats = {"history": state.history, **grouping_stats(self.config, state)}
        return Generated(state.noise.float() / 255, state.triggers, stats)  # type: ignore[union-attr]
