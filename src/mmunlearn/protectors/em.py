"""``em``: image-only error-minimising noise (Huang et al., ICLR 2021), adapted to the CLIP loss.

Sample-wise (here: pair-wise) min-min: surrogate steps on the perturbed pairs alternate with PGD that
descends the contrastive loss over each image's noise; no text trigger, no caption shuffle. This is
MEM's "EM" baseline (the authors' ``poison_mm`` script), with EM's optional early stop when the
surrogate fits the perturbed data. See docs/methods/em.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..data.core import MultimodalDataset
from ..errors import ConfigError
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector, vocab_size
from .minmin import grouping_stats, run_min_min, settings_from


@dataclass(frozen=True)
class EMConfig(ProtectConfig):
    """EM settings (same budget and loop sizes as `MEMConfig`, so the comparison is fair).

    Attributes:
        epsilon: L-inf budget [8/255, EM and MEM].
        step: PGD step [1/255 as in MEM's EM baseline; EM's image version uses 0.8/255].
        pgd_steps: PGD steps per batch per pass [8 in MEM's EM baseline; 20 in EM sample-wise].
        outer_iters: outer iterations [5 in MEM's EM baseline].
        surrogate_steps: surrogate steps per outer iteration [50 in MEM's EM baseline; 10 in EM].
        batch_size: pairs per batch [128].
        lr: surrogate learning rate (see `MEMConfig.lr`).
        stop_accuracy: stop once the surrogate's in-batch retrieval accuracy on the perturbed pairs
            reaches this [EM: training accuracy > 99%]; None = run every outer iteration.
        groups: None = sample-wise (one per pair; per image when an image has several captions);
            k = one noise per group of a k-means partition of the images into k groups (L2-normalised
            image embeddings of the surrogate before training; Unlearnable Clusters, arXiv 2301.01217; the
            MEM code's class-wise variant draws the groups at random instead). At most the number of
            distinct images (checked at `protect`). See docs/methods/mem.md, "Grouped protection".
        seed: surrogate initialisation and data order.
        progress: progress bar.
    """

    epsilon: float = 8 / 255
    step: float = 1 / 255
    pgd_steps: int = 5
    outer_iters: int = 6
    surrogate_steps: int = 80
    batch_size: int = 128
    lr: float = 2e-3
    stop_accuracy: float | None = 0.99
    groups: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stop_accuracy is not None and not 0 < self.stop_accuracy <= 1:
            raise ConfigError(f"stop_accuracy must be in (0, 1] or None, got {self.stop_accuracy!r}")


@PROTECTORS.register("em")
class EM(Protector):
    """Per-pair error-minimising image noise against a contrastive surrogate; captions untouched."""

    name: ClassVar[str] = "em"
    paper: ClassVar[str] = "Huang et al., Unlearnable Examples: Making Personal Data Unexploitable, ICLR 2021"
    changes: ClassVar[tuple[str, ...]] = ("image",)
    uses_surrogate: ClassVar[bool] = True
    Config: ClassVar[type[ProtectConfig]] = EMConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Run the min-min loop with noise only."""
        settings = settings_from(self.config)
        state = run_min_min(dataset, surrogate, settings, vocab_size(dataset), desc=self.name)  # type: ignore[arg-type]
        stats = {"history": state.history, **grouping_stats(self.config, state)}
        return Generated(state.noise.float() / 255, None, stats)  # type: ignore[union-attr]
