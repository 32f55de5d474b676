"""MANU-style modality-aware neuron pruning (docs/methods/manu.md).

Training-free: for every forgotten modality, forward hooks on the Linear and Conv layers of that modality's
encoder collect per-neuron activation statistics (mean |a|, frequency of |a| > tau, standard deviation,
root mean square) on U and on gold-standard data; a neuron's score is
``sum_s w_s * (I_s(U) / (I_s(retain) + 1e-5) - 1)``, and the top ``prune_ratio`` of the encoder's neurons by
score are pruned: their row of the weight and their bias entry are set to zero, so the neuron outputs 0
whatever the input.

A modality's encoder is found through the model's protocol alone: the Linear/Conv modules that run when only
that modality is encoded (``model.embed(batch, m)`` for a classifier, ``encode_image`` / ``encode_text`` for a
dual encoder) and not when another modality is encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..models.protocols import DualEncoderModel
from ..runtime import Batch, epoch_batches, model_device, progress, to_device
from ..train import WorkFolder
from .base import UNLEARNERS, Run, UnlearnConfig, Unlearner
from .objectives import MODEL_KINDS

NEURON_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layers whose output units (Linear) or channels (Conv) are MANU's neurons."""
CLAMP = 1e3
"""Activations are clamped to +-CLAMP before the statistics (as the published code does)."""
STATS = ("abs", "freq", "var", "rms")


@dataclass(frozen=True)
class MANUConfig(UnlearnConfig):
    """Defaults: Liu et al. (ACL 2025) via their code (`franciscoliu/MANU`): weights abs 2, freq 0 (disabled),
    var 2, rms 2; tau 0.1; activations clamped to +-1e3; retain batches capped at the forget batches' number.
    ``prune_ratio`` 0.05: the top of the paper's recommended 1-5% (3% is its best trade-off; the code's
    default is 2%).

    Used fields: ``batch_size`` (U batches), ``retain_batch_size`` (gold-standard batches), ``seed``,
    ``progress``. ``epochs``, ``lr``, ``optimizer``, ``weight_decay`` and ``grad_clip`` are accepted but unused:
    MANU takes no gradient step.

    Attributes:
        prune_ratio: fraction of a forgotten modality's encoder neurons to prune (at least one).
        max_batches: at most this many U batches, and as many gold-standard batches.
        tau: the activation magnitude the frequency statistic counts above.
        w_abs: weight of the mean-|activation| ratio.
        w_freq: weight of the activation-frequency ratio (0 in the published code).
        w_var: weight of the standard-deviation ratio.
        w_rms: weight of the root-mean-square ratio.
    """

    prune_ratio: float = 0.05
    max_batches: int = 32
    tau: float = 0.1
    w_abs: float = 2.0
    w_freq: float = 0.0
    w_var: float = 2.0
    w_rms: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.prune_ratio <= 1:
            raise ConfigError(f"prune_ratio must be in (0, 1], got {self.prune_ratio}")
        if self.max_batches < 1:
            raise ConfigError(f"max_batches must be >= 1, got {self.max_batches}")
        if min(self.w_abs, self.w_freq, self.w_var, self.w_rms) < 0 or self.tau < 0:
            raise ConfigError("the weights w_* and tau must be >= 0")

    @property
    def weights(self) -> dict[str, float]:
        """Statistic -> weight."""
        return {"abs": self.w_abs, "freq": self.w_freq, "var": self.w_var, "rms": self.w_rms}


# -- encoders and activations -----------------------------------------------------------------------


def encoder_runners(model: Any, kind: type) -> dict[str, Callable[[Batch], Tensor]]:
    """Modality -> a function that runs only that modality's encoder on a batch."""
    if kind is DualEncoderModel:

        def image(b: Batch) -> Tensor:
            return model.encode_image(b["image"])

        def text(b: Batch) -> Tensor:
            return model.encode_text(b["text"])

        return {"image": image, "text": text}
    return {m: partial(model.embed, modality=m) for m in model.modalities}


@contextmanager
def recording(modules: dict[str, nn.Module], sink: Callable[[str, Tensor], None]) -> Iterator[None]:
    """Forward hooks that hand ``(name, output)`` of every module in ``modules`` to ``sink``."""
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: sink(name, out.detach())) for name, m in modules.items()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def modality_modules(model: Any, kind: type, batch: Batch) -> dict[str, dict[str, nn.Module]]:
    """Modality -> the neuron layers (by name) that run when that modality alone is encoded and for no other.

    Activations are taken in eval mode with autograd on (see `collect_stats` for why).
    """
    layers: dict[str, nn.Module] = {n: m for n, m in model.named_modules() if isinstance(m, NEURON_LAYERS)}
    fired = {m: layers_run(layers, encode, batch) for m, encode in encoder_runners(model, kind).items()}
    return {
        m: {n: layers[n] for n in layers if n in names and not any(n in o for k, o in fired.items() if k != m)}
        for m, names in fired.items()
    }


def layers_run(layers: dict[str, nn.Module], encode: Callable[[Batch], Tensor], batch: Batch) -> set[str]:
    """The names of ``layers`` whose forward runs when ``encode(batch)`` does."""
    seen: set[str] = set()
    with recording(layers, lambda name, _out: seen.add(name)), torch.enable_grad():
        encode(batch)
    return seen


def neuron_view(layer: nn.Module, out: Tensor) -> Tensor:
    """A layer output as (entries, neurons): a Linear's units are its last axis, a conv's its channel axis;
    every other axis (samples, positions) gives entries."""
    if isinstance(layer, nn.Linear):
        return out.reshape(-1, out.shape[-1])
    return out.transpose(0, 1).reshape(out.shape[1], -1).T


@dataclass
class RunningStats:
    """Float64 running sums of one layer's per-neuron activations."""

    n: int
    abs_sum: Tensor
    above: Tensor
    total: Tensor
    squares: Tensor

    @classmethod
    def empty(cls, neurons: int) -> RunningStats:
        z = torch.zeros(neurons, dtype=torch.float64)
        return cls(0, z.clone(), z.clone(), z.clone(), z.clone())

    def add(self, a: Tensor, tau: float) -> None:
        """Add (entries, neurons) activations (clamped to +-CLAMP)."""
        a = a.double().clamp(-CLAMP, CLAMP).cpu()
        self.n += a.shape[0]
        self.abs_sum += a.abs().sum(0)
        self.above += (a.abs() > tau).double().sum(0)
        self.total += a.sum(0)
        self.squares += (a * a).sum(0)

    def importances(self) -> dict[str, Tensor]:
        """Per neuron: mean |a|, fraction |a| > tau, population standard deviation, root mean square."""
        n = max(self.n, 1)
        mean, mean_sq = self.total / n, self.squares / n
        return {
            "abs": self.abs_sum / n,
            "freq": self.above / n,
            "var": (mean_sq - mean * mean).clamp_min(0).sqrt(),
            "rms": mean_sq.sqrt(),
        }


def collect_stats(
    modules: dict[str, nn.Module], encode: Callable[[Batch], Tensor], batches: Sequence[Batch], tau: float
) -> dict[str, RunningStats]:
    """Per-neuron statistics of ``modules`` over ``batches`` run through ``encode``.

    Autograd stays on: PyTorch's fused inference path of `nn.TransformerEncoderLayer` (taken in eval mode
    without autograd) skips its Linear modules, so their hooks would never fire.
    """
    stats: dict[str, RunningStats] = {}

    def sink(name: str, out: Tensor) -> None:
        a = neuron_view(modules[name], out)
        stats.setdefault(name, RunningStats.empty(a.shape[1])).add(a, tau)

    with recording(modules, sink), torch.enable_grad():
        for b in batches:
            encode(b)
    return stats


def neuron_scores(forget: RunningStats, retain: RunningStats, weights: dict[str, float]) -> Tensor:
    """``sum_s w_s * (I_s(forget) / (I_s(retain) + 1e-5) - 1)`` per neuron (statistics with weight 0 skipped)."""
    f, r = forget.importances(), retain.importances()
    score = torch.zeros_like(f["abs"])
    for s in STATS:
        if weights[s]:
            score += weights[s] * (f[s] / (r[s] + 1e-5) - 1)
    return score


def top_neurons(scores: dict[str, Tensor], ratio: float) -> dict[str, Tensor]:
    """The top ``max(1, floor(ratio * N))`` of the N neurons by score, over all layers together (ties: the
    earlier layer, then the lower index). Returns layer -> sorted neuron indices (layers without any omitted)."""
    names = list(scores)
    flat = torch.cat([scores[n] for n in names])
    k = max(1, int(ratio * flat.numel()))
    chosen = torch.sort(flat, descending=True, stable=True).indices[:k]
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        idx = chosen[(chosen >= start) & (chosen < start + size)] - start
        if idx.numel():
            out[n] = idx.sort().values
        start += size
    return out


def prune(modules: dict[str, nn.Module], chosen: dict[str, Tensor]) -> None:
    """Zero the chosen neurons' rows of the weight (output units / channels) and their bias entries."""
    with torch.no_grad():
        for name, idx in chosen.items():
            layer = modules[name]
            weight: Tensor = layer.weight  # type: ignore[assignment]
            weight[idx.to(weight.device)] = 0
            bias = getattr(layer, "bias", None)
            if bias is not None:
                bias[idx.to(bias.device)] = 0


# -- the method ----------------------------------------------------------------------------------------


def rows_with(batch: Batch, modality: str) -> Batch | None:
    """The rows of ``batch`` in which ``modality`` is present (None when there are none)."""
    present = batch.get(f"present_{modality}")
    if present is None or bool(present.all()):
        return batch
    if not bool(present.any()):
        return None
    return {k: v[present] for k, v in batch.items()}


@UNLEARNERS.register("manu")
class MANU(Unlearner[MANUConfig, None]):
    """Prune the neurons of each forgotten modality's encoder that fire for U far more than for the rest."""

    name = "manu"
    paper = "Liu et al., Modality-Aware Neuron Pruning for Unlearning in Multimodal Large Language Models (ACL 2025)"
    stage = "architecture-constrained"
    requires = MODEL_KINDS
    Config = MANUConfig

    def run(self, model: Any, run: Run[None], work: WorkFolder | None = None) -> None:
        """Statistics, scores and pruning for every forgotten modality (``work`` is unused: no epochs).

        Raises:
            DataError: a forgotten modality has no encoder layer of its own, or no U or retain sample with it.
        """
        c = self.config
        model.eval()
        forget, keep = self._data(model, run)
        per_modality = modality_modules(model, run.kind, forget[0])
        runners = encoder_runners(model, run.kind)
        modalities = sorted(run.data.modalities)
        bar = progress(total=len(modalities), desc=self.name, unit="modality", enabled=c.progress)
        try:
            for m in modalities:
                modules = per_modality.get(m, {})
                if not modules:
                    raise DataError(f"{self.name}: found no Linear/Conv layer that only the {m!r} encoder runs")
                prune(modules, self.choose(modules, runners[m], forget, keep, m))
                bar.update(1)
        finally:
            bar.close()

    def choose(
        self,
        modules: dict[str, nn.Module],
        encode: Callable[[Batch], Tensor],
        forget: list[Batch],
        keep: list[Batch],
        modality: str,
    ) -> dict[str, Tensor]:
        """The neurons to prune in one modality's encoder (layer -> indices)."""
        c = self.config
        f_rows = [b for b in (rows_with(x, modality) for x in forget) if b is not None]
        r_rows = [b for b in (rows_with(x, modality) for x in keep) if b is not None]
        if not f_rows or not r_rows:
            raise DataError(f"{self.name}: U and the gold-standard set both need samples with {modality!r}")
        f_stats = collect_stats(modules, encode, f_rows, c.tau)
        r_stats = collect_stats(modules, encode, r_rows, c.tau)
        scores = {n: neuron_scores(f_stats[n], r_stats[n], c.weights) for n in modules if n in f_stats}
        return top_neurons(scores, c.prune_ratio)

    def _data(self, model: Any, run: Run[None]) -> tuple[list[Batch], list[Batch]]:
        """Seeded U batches (at most ``max_batches``) and as many gold-standard batches, on the model's device."""
        c, d, device = self.config, run.data, model_device(model)
        u = epoch_batches(len(d.unlearn), c.batch_size, c.seed, 0)[: c.max_batches]
        r = epoch_batches(len(d.gold_standard), c.retain_batch_size, c.seed + 7919, 0)[: len(u)]
        return (
            [to_device(d.unlearn.batch(i), device) for i in u],
            [to_device(d.gold_standard.batch(i), device) for i in r],
        )
