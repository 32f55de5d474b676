"""Logit difference (ULD): subtract a forget expert's logits at decoding time (docs/methods/logit_difference.md).

A forget expert (the assistant of ULD) is trained with ULD's reversed objectives: it *learns* U's
captions (token cross-entropy) and *forgets* the data to keep (KL from the uniform distribution to its
next-token distribution). At decoding the captioner's next-token logits ``l`` and the expert's ``a`` on the
same image and prefix are combined as ULD's code does, with its relative-top plausibility filter:

    logp = log_softmax(l);  thr = min(logp_(k), max(logp) + log r),  k = max(1, floor(r * V))
    l' = l - alpha * where(logp < thr, 0, a)

so only tokens the captioner finds plausible are pushed down by the expert's confidence in them. The
captioner's weights do not change; the result is a `DecodingEdit`.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..models.captioner import IGNORE
from ..models.protocols import CaptionerModel
from ..optim import check_weights, checked_step, optimizer_for
from ..runtime import epoch_batches, model_device, progress, seeded, to_device
from .base import UNLEARNERS, UnlearnConfig, UnlearnData, Unlearner
from .decoding import Batch, DecodingEdit, DecodingRule, keep_set, rows_of, wrap

EXPERTS = ("copy", "small")


@dataclass(frozen=True)
class LogitDifferenceConfig(UnlearnConfig):
    """Defaults: ULD (Ji et al., NeurIPS 2024) code: weight w = -1.0 (``alpha`` = 1.0; -0.8 at their
    evaluation), relative-top filter 0.1, retain weight 5.0 on the uniform-KL term, lr 1e-3. ULD's
    assistant is the target's first 8 layers with LoRA (r 16); here the expert is a full copy of the
    captioner fine-tuned whole (``expert="copy"``), or a fresh smaller captioner of the same vocabulary
    (``"small"``, `Captioner` only). ``epochs``, ``lr``, ``batch_size`` (U), ``retain_batch_size``,
    ``optimizer``, ``weight_decay`` and ``grad_clip`` drive the expert's training (5 epochs: ours).

    Attributes:
        alpha: weight of the expert's logits in ``l - alpha * a`` (> 0 suppresses what the expert knows).
        relative_top: plausibility filter r; tokens with ``p < r * p_max`` (and outside the top
            ``max(1, floor(r * V))``) keep the captioner's logit. 0 turns the filter off.
        retain_weight: weight of the KL(uniform || expert) term on the data to keep (0: fine-tune on U only).
        expert: ``"copy"`` (a copy of the captioner) or ``"small"`` (a fresh captioner of ``expert_dim``
            width and ``expert_layers`` layers, encoder and decoder).
        expert_dim: width of a ``"small"`` expert.
        expert_layers: layers of a ``"small"`` expert.
        expert_heads: attention heads of a ``"small"`` expert (must divide ``expert_dim``).
    """

    alpha: float = 1.0
    relative_top: float = 0.1
    retain_weight: float = 5.0
    expert: str = "copy"
    expert_dim: int = 32
    expert_layers: int = 1
    expert_heads: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ConfigError(f"alpha must be a finite number >= 0, got {self.alpha}")
        if not 0 <= self.relative_top < 1:
            raise ConfigError(f"relative_top must be in [0, 1), got {self.relative_top}")
        if not math.isfinite(self.retain_weight) or self.retain_weight < 0:
            raise ConfigError(f"retain_weight must be a finite number >= 0, got {self.retain_weight}")
        if self.expert not in EXPERTS:
            raise ConfigError(f"expert must be one of {list(EXPERTS)}, got {self.expert!r}")
        if min(self.expert_dim, self.expert_layers, self.expert_heads) < 1 or self.expert_dim % self.expert_heads:
            raise ConfigError("expert_dim, expert_layers, expert_heads must be >= 1 and heads must divide the width")


# -- the formula -------------------------------------------------------------------------------------
def implausible(logits: Tensor, relative_top: float) -> Tensor:
    """ULD's relative-top filter: True where ``log p < min(logp_(k), max log p + log r)``, k = max(1, floor(r V)).

    (ULD's code uses k = floor(r V), which indexes the *smallest* log-probability when r V < 1 and so
    filters nothing on a small vocabulary; k >= 1 keeps the filter meaningful.) r = 0: nothing is filtered.
    """
    if relative_top <= 0:
        return torch.zeros_like(logits, dtype=torch.bool)
    logp = logits.float().log_softmax(-1)
    k = max(1, int(relative_top * logits.shape[-1]))
    kth = logp.topk(k, dim=-1).values[..., -1:]
    thr = torch.minimum(kth, logp.amax(-1, keepdim=True) + math.log(relative_top))
    return logp < thr


def combine(logits: Tensor, expert: Tensor, alpha: float, relative_top: float) -> Tensor:
    """``l - alpha * where(implausible(l), 0, a)`` (the module docstring's formula)."""
    a = expert.to(logits.dtype).masked_fill(implausible(logits, relative_top), 0.0)
    return logits - alpha * a


class ExpertOffsetProcessor:
    """A ``transformers`` logits processor: the expert's next-token logits for the same images and prefix,
    combined with the scores by `combine`. The expert reruns its whole prefix at every step (no cache):
    cheap on the project's small captioners, quadratic in the caption length in general."""

    def __init__(self, expert: Any, images: Tensor, alpha: float, relative_top: float) -> None:
        self.expert, self.images, self.alpha, self.relative_top = expert, images, alpha, relative_top

    def expert_logits(self, input_ids: Tensor) -> Tensor:
        """(rows, V) the expert's next-token logits after ``input_ids`` ([start, generated ...]).

        The text gets one padding column, so that the first step (no word yet) is a valid caption row;
        by causality it does not change the logits read at position ``t`` (after ``t`` generated tokens).
        """
        text = torch.cat([input_ids[:, 1:], torch.zeros_like(input_ids[:, :1])], dim=1)
        batch = {"image": rows_of(self.images, len(input_ids)), "text": text}
        with torch.no_grad():
            return self.expert.caption_logits(batch)[:, input_ids.shape[1] - 1]

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        return combine(scores, self.expert_logits(input_ids), self.alpha, self.relative_top)


class OffsetRule(DecodingRule):
    """The decoding-time part of logit_difference: the trained forget expert and the combination's knobs."""

    def __init__(self, expert: nn.Module, alpha: float, relative_top: float) -> None:
        super().__init__()
        self.expert = expert
        self.alpha, self.relative_top = alpha, relative_top

    def processor(self, captioner: Any, images: Tensor) -> ExpertOffsetProcessor:
        """`ExpertOffsetProcessor` bound to ``images``."""
        return ExpertOffsetProcessor(self.expert, images, self.alpha, self.relative_top)

    def edit_logits(self, captioner: Any, batch: Batch, logits: Tensor, prefix: Tensor) -> Tensor:
        """Teacher forcing in one pass: the expert's teacher-forced logits are its per-prefix logits."""
        with torch.no_grad():
            expert = self.expert.caption_logits(batch)  # type: ignore[operator]
        return combine(logits, expert, self.alpha, self.relative_top)


# -- the expert ----------------------------------------------------------------------------------------
def uniform_kl(model: Any, batch: Batch) -> Tensor:
    """Mean over the caption's target positions of KL(uniform || p_model): ULD's retain term."""
    logits = model.caption_logits(batch)
    keep = model.caption_targets(batch) != IGNORE
    logp = logits[keep].log_softmax(-1)
    return (-math.log(logp.shape[-1]) - logp.mean(-1)).mean()


def new_expert(model: Any, c: LogitDifferenceConfig) -> Any:
    """The untrained expert: a copy of ``model``, or a fresh small captioner of its vocabulary and shapes."""
    if c.expert == "copy":
        return copy.deepcopy(model)
    from ..models import build_model

    config = getattr(model, "config_dict", lambda: None)()
    if getattr(model, "kind", None) != "captioner" or not config or config.get("hf_config") is not None:
        raise ConfigError("expert='small' needs a project Captioner built from its size fields; use expert='copy'")
    sizes = {"enc_dim": c.expert_dim, "dec_dim": c.expert_dim, "enc_layers": c.expert_layers,
             "dec_layers": c.expert_layers, "heads": c.expert_heads}  # fmt: skip
    return build_model("captioner", c.seed, **{**config, **sizes}).to(model_device(model))


def train_expert(expert: Any, data: UnlearnData, c: LogitDifferenceConfig, bar: Any) -> Any:
    """ULD's reversed objectives, one U batch and one keep batch per step:
    ``L = CE(expert, U captions) + retain_weight * KL(uniform || expert)`` on the data to keep.

    Raises:
        DivergenceError: the loss or the weights became NaN/inf.
    """
    expert.requires_grad_(True)
    opt = optimizer_for(expert, c)
    u, keep, device = data.unlearn, keep_set(data), model_device(expert)
    for epoch in range(c.epochs):
        r_idx = epoch_batches(len(keep), c.retain_batch_size, c.seed + 7919, epoch) if c.retain_weight else []
        for i, idx in enumerate(epoch_batches(len(u), c.batch_size, c.seed, epoch)):
            expert.train()
            loss = expert.loss(to_device(u.batch(idx), device))
            if r_idx:
                loss = loss + c.retain_weight * uniform_kl(expert, to_device(keep.batch(r_idx[i % len(r_idx)]), device))
            checked_step(expert, opt, loss, c.grad_clip, "logit_difference: the expert's")
            bar.update(1)
        check_weights(expert, "logit_difference: the expert's")
    return expert.eval().requires_grad_(False)


@UNLEARNERS.register("logit_difference")
class LogitDifference(Unlearner[LogitDifferenceConfig, None]):
    """Train a forget expert on U, subtract its logits at decoding (a `DecodingEdit`; weights unchanged)."""

    name = "logit_difference"
    paper = (
        "Ji et al., Reversing the Forget-Retain Objectives: An Efficient LLM Unlearning Framework from Logit "
        "Difference (ULD, NeurIPS 2024)"
    )
    stage = "decoding-time"
    requires = (CaptionerModel,)
    requires_retain = True
    Config = LogitDifferenceConfig

    def unlearn(
        self, model: Any, data: UnlearnData, original: Any = None, work_dir: str | os.PathLike[str] | None = None
    ) -> DecodingEdit:
        """A `DecodingEdit` of ``model`` with a forget expert trained here (``work_dir`` is unused: the
        expert's training is short and not resumable).

        Raises:
            ConfigError: the model is not a captioner, or ``expert="small"`` on a captioner that is not a
                project `Captioner`.
            DataError: empty U, or no complete pair to keep while ``retain_weight`` > 0.
            DivergenceError: the expert's training diverged.
        """
        self.validate(model, data)
        c = self.config
        if c.retain_weight and len(keep_set(data)) == 0:
            raise DataError("logit_difference needs complete pairs to keep for its retain term (or retain_weight=0)")
        steps = c.epochs * len(epoch_batches(len(data.unlearn), c.batch_size, c.seed, 0))
        bar = progress(total=steps, desc=self.name, unit="step", enabled=c.progress)
        try:
            with seeded(c.seed):
                expert = train_expert(new_expert(model, c), data, c, bar)
        finally:
            bar.close()
        return wrap(model, OffsetRule(expert, c.alpha, c.relative_top), self.name)
