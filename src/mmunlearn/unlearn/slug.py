"""SLUG: Single Layer Unlearning Gradient, one step on one layer (docs/methods/slug.md).

1. One mean gradient of the forget loss ``g_f`` (`task_loss` over batches of U) and one of the retain loss
   ``g_r`` (``model.loss`` over gold-standard batches).
2. Every layer (a module's own parameters, weight and bias together) is scored by its importance
   ``||g_f,l|| / ||theta_l||`` and its alignment ``|cos(g_f,l, g_r,l)|``; the layers that no other layer beats
   on both (higher importance *and* lower alignment) form the Pareto front.
3. On a front layer, ``theta_l(lambda) = theta_l + lambda * (||theta_l|| / ||g_f,l||) * g_f,l``: a step up the
   forget loss whose size is ``lambda`` times the layer's norm. ``lambda`` runs up a geometric grid until
   the stopping criterion holds, then is bisected down to the smallest step that still meets it.
4. The layer kept is the one whose step meets the criterion at the lowest loss on the gold-standard
   batches (``layer_rule="search"``), or the front's most important layer (``"importance"``).

Only that layer's parameters change. No optimizer, no epochs: `SLUG.run` replaces the shared loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError, DivergenceError
from ..models.protocols import DualEncoderModel
from ..runtime import Batch, epoch_batches, model_device, progress, to_device
from ..train import WorkFolder, outputs_finite
from .base import UNLEARNERS, Run, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS, output_logits, task_logits, task_loss

log = logging.getLogger(__name__)

LAYER_RULES = ("search", "importance")
CRITERIA = ("accuracy", "validation")


@dataclass(frozen=True)
class SLUGConfig(UnlearnConfig):
    """Defaults: Cai et al. (ICML 2025) via their code (`CSIPlab/SLUG`): one gradient pass, the Pareto front
    of (importance, |alignment|), first step ``||theta_l|| / (10 ||g_f,l||)`` (``step_start = 0.1``), doubled
    until the forget accuracy is 0, then bisected (10 evaluations per layer in all: 5 + 5 here).

    Used fields: ``batch_size`` (U batches of the gradient and of every evaluation), ``retain_batch_size``
    (gold-standard batches), ``seed`` (their order), ``progress``. ``epochs``, ``lr``, ``optimizer``,
    ``weight_decay`` and ``grad_clip`` are accepted but unused: SLUG takes no optimizer step.

    Attributes:
        grad_batches: at most this many batches of U, of the gold-standard set and of the validation split.
        step_start: first ``lambda`` of the grid, as a fraction of the layer's norm (the size of the step).
        step_factor: ratio between successive grid steps (> 1).
        step_count: steps in the grid.
        bisect_rounds: bisections between the last step that missed the criterion and the first that met it.
        criterion: when a step has forgotten enough: ``"accuracy"`` (the paper's: top-1 accuracy of the
            forget data's task logits at most ``target_accuracy``) or ``"validation"`` (the forget data's task
            loss at least the validation split's under the original: U then looks like unseen data).
        target_accuracy: the forget accuracy the ``"accuracy"`` criterion stops at (the paper's: 0).
        layer_rule: ``"search"`` (search every front layer, keep the one that meets the criterion at the
            lowest gold-standard loss) or ``"importance"`` (search only the front's most important layer).
    """

    grad_batches: int = 32
    step_start: float = 0.1
    step_factor: float = 2.0
    step_count: int = 5
    bisect_rounds: int = 5
    criterion: str = "accuracy"
    target_accuracy: float = 0.0
    layer_rule: str = "search"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grad_batches < 1 or self.step_count < 1 or self.bisect_rounds < 0:
            raise ConfigError("grad_batches and step_count must be >= 1, bisect_rounds >= 0")
        if not (self.step_start > 0 and math.isfinite(self.step_start)) or not self.step_factor > 1:
            raise ConfigError(f"step_start must be > 0 and step_factor > 1, got {self.step_start}, {self.step_factor}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if self.layer_rule not in LAYER_RULES:
            raise ConfigError(f"unknown layer_rule {self.layer_rule!r}; choose one of {', '.join(LAYER_RULES)}")
        if not 0 <= self.target_accuracy <= 1:
            raise ConfigError(f"target_accuracy must be in [0, 1], got {self.target_accuracy}")


# -- layers, gradients and scores ------------------------------------------------------------------------


def model_layers(model: Any) -> dict[str, list[str]]:
    """The layers SLUG scores: module name -> the names of the parameters the module owns itself.

    A layer is a module with trainable parameters of its own (a Linear's weight and bias, a conv, a norm, an
    embedding table, an attention's fused input projection); a module owning only a scalar (a logit scale)
    is no layer. Names are those of ``model.named_parameters()``; the root module is ``""``.
    """
    out: dict[str, list[str]] = {}
    for mod_name, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if sum(p.numel() for _, p in own) > 1:
            out[mod_name] = [f"{mod_name}.{n}" if mod_name else n for n, _ in own]
    return out


def mean_gradient(model: Any, batches: Sequence[Batch], loss: Callable[[Batch], Tensor]) -> dict[str, Tensor]:
    """The mean over ``batches`` of the gradient of ``loss`` (zeros where a parameter gets none)."""
    model.zero_grad(set_to_none=True)
    for b in batches:
        (loss(b) / len(batches)).backward()
    grads = {
        n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone() for n, p in model.named_parameters()
    }
    model.zero_grad(set_to_none=True)
    return grads


@dataclass(frozen=True)
class LayerScore:
    """A layer's importance ``||g_f,l|| / ||theta_l||`` and alignment ``|cos(g_f,l, g_r,l)|`` (0 if a gradient is 0)."""

    importance: float
    alignment: float


def _flat(tensors: dict[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([tensors[n].detach().flatten().double() for n in names])


def layer_scores(
    params: dict[str, Tensor], g_forget: dict[str, Tensor], g_retain: dict[str, Tensor], layers: dict[str, list[str]]
) -> dict[str, LayerScore]:
    """Importance and alignment of every layer (see `LayerScore`)."""
    out = {}
    for layer, names in layers.items():
        theta, gf, gr = _flat(params, names), _flat(g_forget, names), _flat(g_retain, names)
        nf, nr = float(gf.norm()), float(gr.norm())
        importance = nf / max(float(theta.norm()), 1e-12)
        alignment = abs(float(gf @ gr)) / (nf * nr) if nf > 0 and nr > 0 else 0.0
        out[layer] = LayerScore(importance, alignment)
    return out


def pareto_front(scores: dict[str, LayerScore]) -> list[str]:
    """The layers with a forget gradient that no other layer dominates, in model order.

    Layer ``a`` dominates ``b`` when ``a`` has strictly higher importance and strictly lower alignment (the
    published code's test). Layers the forget loss does not reach (importance 0) are never candidates.
    """
    live = {k: s for k, s in scores.items() if s.importance > 0}
    return [
        k
        for k, s in live.items()
        if not any(o.importance > s.importance and o.alignment < s.alignment for o in live.values())
    ]


def step_grid(config: SLUGConfig) -> list[float]:
    """``step_start * step_factor ** i`` for ``i < step_count``."""
    return [config.step_start * config.step_factor**i for i in range(config.step_count)]


# -- the search ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """The forget data's mean task loss and top-1 accuracy after one step (``finite``: both are numbers)."""

    loss: float
    accuracy: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.accuracy)


def forget_measure(model: Any, run: Run[Any], batches: Sequence[Batch]) -> Measure:
    """Mean `task_loss` over ``batches`` and the fraction of task-logit rows whose argmax is the target."""
    total, hits, rows = 0.0, 0, 0
    with torch.no_grad():
        for b in batches:
            logits, target = task_logits(model, run, b)
            total += float(F.cross_entropy(logits, target))
            hits += int((logits.argmax(1) == target).sum())
            rows += len(target)
    return Measure(total / len(batches), hits / max(rows, 1))


def keep_loss(model: Any, run: Run[Any], batches: Sequence[Batch]) -> float:
    """Mean loss of the full outputs on gold-standard batches, without the model's training noise (a
    classifier's modality dropout): fused CE with the labels, or a dual encoder's contrastive loss (its
    batches hold complete pairs only, see `SLUG._data`)."""
    total = 0.0
    with torch.no_grad():
        for b in batches:
            if run.kind is DualEncoderModel:
                target = torch.arange(len(b["image"]), device=b["image"].device)
                total += float(F.cross_entropy(output_logits(model, run, b), torch.cat([target, target])))
            else:
                total += float(F.cross_entropy(output_logits(model, run, b), b["label"]))
    return total / max(len(batches), 1)


@dataclass(frozen=True)
class Candidate:
    """One searched layer: its step ``lam`` (a fraction of its norm), what that step gives, and whether it
    met the criterion."""

    layer: str
    lam: float
    measure: Measure
    reached: bool
    keep: float = math.inf


# -- the method ----------------------------------------------------------------------------------------


@UNLEARNERS.register("slug")
class SLUG(Unlearner[SLUGConfig, None]):
    """One gradient step on the single layer that matters most for the forget data and least for the rest."""

    name = "slug"
    paper = "Cai et al., Targeted Unlearning with Single Layer Unlearning Gradient (ICML 2025), arXiv 2407.11867"
    stage = "architecture-constrained"
    requires = MODEL_KINDS
    Config = SLUGConfig

    def run(self, model: Any, run: Run[None], work: WorkFolder | None = None) -> None:
        """Gradients, scores, front, search and the one edit (``work`` is unused: there are no epochs to save).

        Raises:
            DataError: the forget loss has no gradient on any layer.
            DivergenceError: no step on any front layer gave finite outputs.
        """
        c = self.config
        model.eval()
        forget, keep, val = self._data(model, run)
        bar = progress(total=len(forget) + len(keep) + 1, desc=self.name, unit="step", enabled=c.progress)
        try:
            g_forget = mean_gradient(model, forget, lambda b: task_loss(model, run, b))
            bar.update(len(forget))
            g_retain = mean_gradient(model, keep, model.loss)
            bar.update(len(keep))
            layers = model_layers(model)
            params = dict(model.named_parameters())
            scores = layer_scores(params, g_forget, g_retain, layers)
            front = pareto_front(scores)
            if not front:
                raise DataError(f"{self.name}: the forget loss has no gradient on any layer; nothing to unlearn")
            if c.layer_rule == "importance":
                front = [max(front, key=lambda k: scores[k].importance)]
            level = self._level(model, run, val)
            found = [self._search(model, run, layer, layers[layer], g_forget, forget, keep, level) for layer in front]
            best = self._choose([f for f in found if f is not None], level)
            self._apply(model, layers[best.layer], g_forget, best.lam)
            bar.update(1)
            log.info(
                "%s: layer %r (importance %.3g, alignment %.3g), step %.3g x its norm; forget loss %.3g, acc %.3g",
                self.name, best.layer, scores[best.layer].importance, scores[best.layer].alignment, best.lam,
                best.measure.loss, best.measure.accuracy,
            )  # fmt: skip
        finally:
            bar.close()
            model.zero_grad(set_to_none=True)
        if not outputs_finite(model, forget[-1], keep[-1] if keep else None):
            raise DivergenceError(f"{self.name}: the model's outputs became NaN/inf; no model is returned")

    def _data(self, model: Any, run: Run[None]) -> tuple[list[Batch], list[Batch], list[Batch]]:
        """Seeded U, gold-standard and validation batches (at most ``grad_batches`` each), on the model's
        device; a dual encoder's gold-standard batches keep their complete pairs only (a pair with a
        forgotten modality is no pair to keep)."""
        c, d, device = self.config, run.data, model_device(model)

        def load(dataset: Any, size: int, seed: int) -> list[Batch]:
            if dataset is None or len(dataset) == 0:
                return []
            index = epoch_batches(len(dataset), size, seed, 0)[: c.grad_batches]
            return [to_device(dataset.batch(i), device) for i in index]

        keep = load(d.gold_standard, c.retain_batch_size, c.seed + 7919)
        if run.kind is DualEncoderModel:
            keep = [b for b in map(complete_pairs, keep) if len(b["image"]) > 1]
        return load(d.unlearn, c.batch_size, c.seed), keep, load(d.validation, c.batch_size, c.seed + 1)

    def _level(self, model: Any, run: Run[None], val: list[Batch]) -> float | None:
        """The validation criterion's level: the validation split's mean task loss under the original (None:
        the accuracy criterion, also the fallback without a validation split)."""
        if self.config.criterion != "validation":
            return None
        if not val:
            log.warning("%s: no validation split given; stopping at forget accuracy <= target_accuracy", self.name)
            return None
        return forget_measure(model, run, val).loss

    def _reached(self, m: Measure, level: float | None) -> bool:
        if not m.finite:
            return False
        return m.accuracy <= self.config.target_accuracy if level is None else m.loss >= level

    def _search(
        self,
        model: Any,
        run: Run[None],
        layer: str,
        names: list[str],
        g_forget: dict[str, Tensor],
        forget: list[Batch],
        keep: list[Batch],
        level: float | None,
    ) -> Candidate | None:
        """Grid up until the criterion holds (or the outputs stop being finite), then bisect down to the
        smallest step that meets it; without one, the step that went furthest. The layer is restored."""
        params = dict(model.named_parameters())
        theta0 = {n: params[n].detach().clone() for n in names}
        tried: list[tuple[float, Measure]] = []

        def at(lam: float) -> Measure:
            self._apply(model, names, g_forget, lam, theta0)
            tried.append((lam, forget_measure(model, run, forget)))
            return tried[-1][1]

        lo, hi = 0.0, None
        for lam in step_grid(self.config):
            m = at(lam)
            if not m.finite or self._reached(m, level):
                hi = lam
                break
            lo = lam
        for _ in range(self.config.bisect_rounds if hi is not None else 0):
            mid = (lo + hi) / 2  # type: ignore[operator]
            m = at(mid)
            lo, hi = (lo, mid) if not m.finite or self._reached(m, level) else (mid, hi)
        met = [(lam, m) for lam, m in tried if self._reached(m, level)]
        finite = [(lam, m) for lam, m in tried if m.finite]
        pick = min(met, key=lambda t: t[0]) if met else self._furthest(finite, level)
        result = None
        if pick is not None:
            self._apply(model, names, g_forget, pick[0], theta0)
            result = Candidate(layer, pick[0], pick[1], bool(met), keep_loss(model, run, keep))
        with torch.no_grad():
            for n in names:
                params[n].copy_(theta0[n])
        return result

    @staticmethod
    def _furthest(tried: list[tuple[float, Measure]], level: float | None) -> tuple[float, Measure] | None:
        """The step that came closest to the criterion (highest loss, or lowest accuracy then highest loss);
        ties: the smaller step."""
        if not tried:
            return None
        if level is None:
            return min(tried, key=lambda t: (t[1].accuracy, -t[1].loss, t[0]))
        return min(tried, key=lambda t: (-t[1].loss, t[0]))

    def _choose(self, found: list[Candidate], level: float | None) -> Candidate:
        """Among the layers whose step met the criterion, the lowest gold-standard loss; if none met it, the
        one that came closest (as `_furthest`), then the lowest gold-standard loss."""
        if not found:
            raise DivergenceError(f"{self.name}: every step of every front layer gave NaN/inf; no model is returned")
        met = [f for f in found if f.reached]
        if met:
            return min(met, key=lambda f: f.keep)
        if level is None:
            return min(found, key=lambda f: (f.measure.accuracy, -f.measure.loss, f.keep))
        return min(found, key=lambda f: (-f.measure.loss, f.keep))

    @staticmethod
    def _apply(
        model: Any, names: list[str], g_forget: dict[str, Tensor], lam: float, theta0: dict[str, Tensor] | None = None
    ) -> None:
        """``theta_l <- theta_l0 + lam * (||theta_l0|| / ||g_f,l||) * g_f,l`` on the layer's parameters ``names``."""
        params = dict(model.named_parameters())
        start = theta0 if theta0 is not None else {n: params[n].detach().clone() for n in names}
        scale = lam * float(_flat(start, names).norm()) / max(float(_flat(g_forget, names).norm()), 1e-30)
        with torch.no_grad():
            for n in names:
                params[n].copy_(start[n] + scale * g_forget[n])
