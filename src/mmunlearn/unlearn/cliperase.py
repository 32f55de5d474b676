"""CLIPErase: forget image-caption pairs of a dual encoder with three modules (docs/methods/cliperase.md).

``L = lambda_rm * RM + lambda_fm * FM + lambda_cm * CM``:

* RM (retention): CLIP's contrastive loss on the retain batch;
* FM (forgetting): the mean cosine of the forget pairs' L2-normalised embeddings, each pair pushed only
  while it is above the floor (the validation split's mean true-pair cosine under the current model,
  refreshed every epoch; ``floor=False`` pushes every pair all the way, as the paper's equation does);
* CM (consistency): KL(original || model) of the row softmax of the retain batch's image-to-text
  similarity logits plus that of its text-to-image ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..models.protocols import DualEncoderModel
from ..runtime import Batch
from .base import UNLEARNERS, Run, Step, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs, info_nce, retrieval_kl, true_pair_cosines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CLIPEraseConfig(UnlearnConfig):
    """Defaults: lambda_rm = 1, lambda_fm = lambda_cm = 3 as published (Yang et al., via the paper note of
    ../shared/reference/methods-wave2.md A.1); epochs and lr re-chosen for this project's models on the
    validation split (``benchmarks/tune_ccu_pairs.py --method cliperase``; docs/methods/cliperase.md).

    Attributes:
        lambda_rm: weight of the retention module (InfoNCE on the retain batch).
        lambda_fm: weight of the forgetting module (forget pairs' cosine).
        lambda_cm: weight of the consistency module (KL to the original's retrieval distributions).
        floor: stop pushing a forget pair once its cosine is at the validation split's mean true-pair
            cosine (the reference's pitfall fix; False: the published, floorless FM).
    """

    epochs: int = 3
    lr: float = 3e-4
    lambda_rm: float = 1.0
    lambda_fm: float = 3.0
    lambda_cm: float = 3.0
    floor: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.lambda_rm, self.lambda_fm, self.lambda_cm) < 0:
            raise ConfigError("the lambda weights must be >= 0")


def forgetting_module(v: Tensor, t: Tensor, floor: float | None) -> Tensor:
    """FM: mean over the forget pairs of ``v_i . t_i`` (without a floor), or of ``max(v_i . t_i - floor, 0)``.

    The floored form has the gradient of the plain one on the pairs above the floor and none below it.
    """
    cos = (v * t).sum(1)
    return cos.mean() if floor is None else F.relu(cos - floor).mean()


@dataclass
class CLIPEraseState:
    """The floor of FM (None: no floor), refreshed at the start of every epoch."""

    floor: Tensor | None = None


@UNLEARNERS.register("cliperase")
class CLIPErase(Unlearner[CLIPEraseConfig, CLIPEraseState]):
    """Forgetting, retention and consistency modules on a dual encoder's forget and retain pairs."""

    name = "cliperase"
    paper = "Yang et al., CLIPErase: Efficient Unlearning of Visual-Textual Associations in CLIP (ACL 2025)"
    requires = (DualEncoderModel,)
    requires_original = True
    Config = CLIPEraseConfig

    def prepare(self, model: DualEncoderModel, run: Run[CLIPEraseState]) -> CLIPEraseState:
        if self.config.floor and run.data.validation is None:
            log.warning("cliperase: no validation split given; the forget pairs are pushed without a floor")
        return CLIPEraseState()

    def on_epoch_start(self, model: DualEncoderModel, run: Run[CLIPEraseState], epoch: int) -> None:
        """The floor: the mean true-pair cosine of the validation split under the model as it is now."""
        val = run.data.validation
        if self.config.floor and val is not None:
            run.state.floor = true_pair_cosines(model, val).mean()

    def loss(self, model: DualEncoderModel, run: Run[CLIPEraseState], step: Step) -> Tensor:
        c, u, r = self.config, step.unlearn, step.retain
        assert u is not None and r is not None
        floor = None if run.state.floor is None else float(run.state.floor)
        fm = forgetting_module(model.encode_image(u["image"]), model.encode_text(u["text"]), floor)
        rm, cm = self._retain_terms(model, run, complete_pairs(r))
        return c.lambda_rm * rm + c.lambda_fm * fm + c.lambda_cm * cm

    def _retain_terms(self, model: DualEncoderModel, run: Run[CLIPEraseState], r: Batch) -> tuple[Tensor, Tensor]:
        """(RM, CM) on one retain batch, the encoders run once."""
        v, t, scale = model.encode_image(r["image"]), model.encode_text(r["text"]), model.logit_scale()
        orig = run.original
        with torch.no_grad():
            target = orig.logit_scale() * orig.encode_image(r["image"]) @ orig.encode_text(r["text"]).T
        return info_nce(v, t, scale), retrieval_kl(target, scale * v @ t.T)
