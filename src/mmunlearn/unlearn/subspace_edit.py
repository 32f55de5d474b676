"""Closed-form subspace edit: project out of a linear map the directions specific to the data to forget
(docs/methods/subspace_edit.md).

With ``A(X, Y) = (X^T Y + Y^T X) / 2n`` (rows of X and Y are paired samples), the removed directions
are the top-k eigenvectors ``Q_k`` of ``M = A_U - gamma * A_R``: the directions along which the data to
forget carry more signal than the data to keep. ``P_k = Q_k Q_k^T``.

* Classifier: X = Y = the forgotten modality's head-input features (``embed``) on U and on the
  gold-standard samples that have that modality; the head's block of that modality becomes
  ``W_m (I - P_k)``, so the head no longer responds to those feature directions.
* Dual encoder: X = image embeddings, Y = caption embeddings of U's pairs and of the gold-standard
  pairs (``v^T t`` is the pairs' similarity, and removing direction q from both sides removes
  ``q^T A q`` from the mean true-pair similarity); the last Linear of each edited tower becomes
  ``(I - P_k) W`` (bias ``(I - P_k) b``). A concept request's prompt embedding is the first direction.

The rank k is the smallest of a grid whose edit raises U's mean task loss to the original's mean task
loss on the validation split (data it never saw). No optimizer is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.concepts import concept_space
from ..data.core import MultimodalDataset
from ..data.tokenizer import WordTokenizer
from ..errors import ConfigError, DataError
from ..models.protocols import DualEncoderModel
from ..runtime import epoch_batches, eval_mode, model_device, progress, to_device
from ..train import WorkFolder
from .base import UNLEARNERS, Run, UnlearnConfig, Unlearner
from .ccu_pairs import complete_pairs
from .objectives import MODEL_KINDS, task_loss

log = logging.getLogger(__name__)

TOWERS = ("image", "text")
FEATURE_BATCH = 256
"""Samples per forward pass when collecting features (no gradients)."""


@dataclass(frozen=True)
class SubspaceEditConfig(UnlearnConfig):
    """Defaults are ours (the closed forms this method draws on, CCUP's null-space projection and SEMU's
    subspaces, fix no rank rule). Of the shared fields only ``batch_size`` (the batches the task losses
    of the rank choice are averaged over) and ``seed`` (their order, and the ``retain_samples`` draw) are
    used; ``epochs``, ``lr`` and the other optimizer fields are accepted and ignored (no optimizer step).

    Attributes:
        ranks: the ranks k tried, in increasing order (each capped at the space's dimension - 1).
        gamma: weight of the data to keep in ``M = A_U - gamma * A_R`` (0: U's own top directions).
        towers: the dual-encoder towers whose last Linear is edited (``"image"``, ``"text"``); the
            image side by default, as in CCUP: editing the text side changes every caption's embedding,
            and a concept prompt lying in the removed span would lose its whole embedding.
        retain_samples: how many gold-standard samples (drawn with ``seed``) estimate ``A_R``; None (the
            default): all of them. The forward pass over the gold-standard set is most of the method's
            time; a subset trades the estimate's noise for it (measured in the card).
    """

    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    gamma: float = 1.0
    towers: tuple[str, ...] = ("image",)
    retain_samples: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ranks or any(k < 1 for k in self.ranks) or list(self.ranks) != sorted(set(self.ranks)):
            raise ConfigError(f"ranks must be increasing positive integers, got {list(self.ranks)}")
        if self.gamma < 0:
            raise ConfigError(f"gamma must be >= 0, got {self.gamma}")
        if not self.towers or not set(self.towers) <= set(TOWERS):
            raise ConfigError(f"towers must be a non-empty subset of {list(TOWERS)}, got {list(self.towers)}")
        if self.retain_samples is not None and self.retain_samples < 1:
            raise ConfigError(f"retain_samples must be >= 1 or None (all), got {self.retain_samples}")


# -- the closed form ----------------------------------------------------------------------------------


def alignment(x: Tensor, y: Tensor) -> Tensor:
    """``(X^T Y + Y^T X) / 2n`` in float64 for paired rows of ``x`` and ``y`` (zeros when there are none)."""
    x, y = x.double(), y.double()
    if len(x) == 0:
        return torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    a = x.T @ y / len(x)
    return (a + a.T) / 2


def specific_directions(matrix: Tensor, fixed: Tensor | None = None) -> Tensor:
    """An orthonormal basis ordered by importance: the ``fixed`` directions first (orthonormalised), then
    the eigenvectors of ``matrix`` restricted to their orthogonal complement, largest eigenvalue first.

    Args:
        matrix: (d, d) symmetric, e.g. ``A_U - gamma * A_R``.
        fixed: (d, m) directions that must be removed first (a concept's prompt embedding), or None.

    Returns:
        (d, d) orthonormal columns; the first k of them span the rank-k subspace to remove.
    """
    d = matrix.shape[0]
    if fixed is None or fixed.shape[1] == 0:
        head, rest = matrix.new_zeros(d, 0), torch.eye(d, dtype=matrix.dtype, device=matrix.device)
    else:
        q, _ = torch.linalg.qr(fixed.to(matrix), mode="complete")
        m = fixed.shape[1]
        head, rest = q[:, :m], q[:, m:]
    values, vectors = torch.linalg.eigh(rest.T @ matrix @ rest)
    order = torch.argsort(values, descending=True, stable=True)
    return torch.cat([head, rest @ vectors[:, order]], 1)


def head_metric(block: Tensor) -> Tensor:
    """``G^(1/2)`` with ``G = W_m^T W_m`` (float64): ``|G^(1/2) f| = |W_m f|``, the size of the logits a
    feature vector f gives through the head's block ``W_m``."""
    values, vectors = torch.linalg.eigh(block.double().T @ block.double())
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def projector(basis: Tensor) -> Tensor:
    """``Q Q^T`` for orthonormal columns Q: the orthogonal projector onto their span."""
    return basis @ basis.T


def removed_right(weight: Tensor, p: Tensor) -> Tensor:
    """``W (I - P)``: a linear map that no longer responds to inputs in the span of P."""
    return weight - (weight.double() @ p).to(weight.dtype)


def removed_left(weight: Tensor, p: Tensor) -> Tensor:
    """``(I - P) W``: a linear map whose outputs have no component in the span of P (W or a bias)."""
    return weight - (p @ weight.double()).to(weight.dtype)


# -- finding the linear maps ----------------------------------------------------------------------------


def classifier_head(model: Any, batch: dict[str, Tensor]) -> tuple[nn.Linear, dict[str, slice]]:
    """The Linear head over the concatenated modality features and each modality's column block.

    The head is the `nn.Linear` (found through ``named_modules``) whose weight reproduces
    ``logits_from_features`` of every modality alone on ``batch``: ``f_m @ W[:, block_m]^T + b``, the
    blocks in ``model.modalities`` order.

    Raises:
        ConfigError: no Linear of the model is such a head.
    """
    with eval_mode(model):
        feats = {m: model.embed(batch, m) for m in model.modalities}
        blocks, start = {}, 0
        for m in model.modalities:
            blocks[m] = slice(start, start + feats[m].shape[1])
            start += feats[m].shape[1]
        alone = {m: model.logits_from_features({m: feats[m]}) for m in model.modalities}
        for _, module in model.named_modules():
            if isinstance(module, nn.Linear) and module.in_features == start:
                w, b = module.weight, module.bias
                if all(_close(feats[m] @ w[:, blocks[m]].T + (0 if b is None else b), alone[m]) for m in blocks):
                    return module, blocks
    raise ConfigError(
        "subspace_edit needs a classifier whose head is one nn.Linear over the concatenated modality "
        "features (logits = b + sum_m W_m f_m); this model has none"
    )


def final_linear(model: nn.Module, encode: Callable[[Tensor], Tensor], inputs: Tensor, tower: str) -> nn.Linear:
    """The last `nn.Linear` that ``encode`` runs, checked to be the tower's output before normalisation.

    Raises:
        ConfigError: the tower runs no Linear, or its embedding is not the normalised output of the last one.
    """
    calls: list[tuple[nn.Linear, Tensor]] = []

    def hook(module: nn.Module, args: Any, output: Tensor) -> None:
        calls.append((module, output))  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with eval_mode(model):
            emb = encode(inputs)
    finally:
        for h in handles:
            h.remove()
    if not calls or not isinstance(calls[-1][1], Tensor) or calls[-1][1].shape != emb.shape:
        raise ConfigError(f"subspace_edit: the {tower} tower does not end in an nn.Linear of the embedding's size")
    module, out = calls[-1]
    if not _close(F.normalize(out, dim=-1), emb):
        raise ConfigError(f"subspace_edit: the {tower} embedding is not the normalised output of its last nn.Linear")
    return module


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


# -- data -------------------------------------------------------------------------------------------------


def mean_task_loss(model: Any, run: Run[Any], data: MultimodalDataset, batch_size: int, seed: int) -> float:
    """The mean over seeded batches of ``batch_size`` of the task loss on ``data`` (model in eval mode).

    The batches are those of epoch 0 of the shared loop (`epoch_batches`), so a dual encoder's
    contrastive loss is taken over batches of the same size on every set it is compared across.
    """
    device = model_device(model)
    with eval_mode(model):
        losses = [
            task_loss(model, run, to_device(data.batch(i), device))
            for i in epoch_batches(len(data), batch_size, seed, 0)
        ]
    return float(torch.stack(losses).mean())


def retain_subset(data: MultimodalDataset, samples: int | None, seed: int) -> MultimodalDataset:
    """``samples`` gold-standard samples drawn without replacement with ``seed`` (in their original order),
    or ``data`` itself when ``samples`` is None or at least its size."""
    if samples is None or samples >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.take(order[:samples].sort().values)


def _rows(data: MultimodalDataset) -> list[Tensor]:
    return list(torch.arange(len(data)).split(FEATURE_BATCH))


def modality_features(model: Any, data: MultimodalDataset, modality: str) -> Tensor:
    """(N, D) features (``embed``) of ``modality`` on the samples of ``data`` that have it."""
    device = model_device(model)
    keep = data.take(data.present[modality].nonzero().flatten()) if modality in data.present else data
    with eval_mode(model):
        parts = [model.embed(to_device(keep.batch(i), device), modality) for i in _rows(keep)]
    return torch.cat(parts) if parts else torch.zeros(0, 0, device=device)


def pair_embeddings(model: Any, data: MultimodalDataset) -> tuple[Tensor, Tensor]:
    """(N, D) image and caption embeddings of the complete pairs of ``data``."""
    device = model_device(model)
    images, texts = [], []
    with eval_mode(model):
        for i in _rows(data):
            b = complete_pairs(to_device(data.batch(i), device))
            images.append(model.encode_image(b["image"]))
            texts.append(model.encode_text(b["text"]))
    return torch.cat(images), torch.cat(texts)


def concept_direction(model: Any, run: Run[Any]) -> Tensor | None:
    """(D, 1) the normalised text embedding of the concept's prompt (None without a concept request).

    The prompt is the concept space's (``"a red circle"``; the concept itself for a dataset without one);
    it is tokenised by the model's own tokenizer where it has ``retokenize``, else by the data's vocabulary.
    """
    concept, data = run.data.concept, run.data.unlearn
    if concept is None:
        return None
    space = concept_space(data)
    prompt = space.prompt(concept) if space is not None else concept
    length = data.inputs["text"].shape[1]
    retokenize = getattr(model, "retokenize", None)
    if callable(retokenize):
        ids = retokenize([prompt], length)
    elif data.vocab is not None:
        ids = WordTokenizer(data.vocab, length).encode([prompt])
    else:
        raise DataError(f"subspace_edit cannot tokenise the concept prompt {prompt!r}: the data have no vocabulary")
    with eval_mode(model):
        return model.encode_text(ids.to(model_device(model))).double().T


# -- the method -----------------------------------------------------------------------------------------


@dataclass
class Edit:
    """One linear map to edit: its weight (and bias), their original values, the basis of the directions
    to remove, and on which side of W they are removed (``"in"``: W (I - P), ``"out"``: (I - P) W)."""

    weight: Tensor
    bias: Tensor | None
    weight0: Tensor
    bias0: Tensor | None
    basis: Tensor
    side: str
    columns: slice = field(default_factory=lambda: slice(None))

    def apply(self, k: int) -> None:
        """Set the map to its original with the first ``k`` basis directions removed (k = 0: the original;
        at most d - 1, so that one direction always remains)."""
        p = projector(self.basis[:, : min(k, self.basis.shape[0] - 1)])
        with torch.no_grad():
            if self.side == "in":
                self.weight[:, self.columns] = removed_right(self.weight0[:, self.columns], p)
            else:
                self.weight.copy_(removed_left(self.weight0, p))
                if self.bias is not None and self.bias0 is not None:
                    self.bias.copy_(removed_left(self.bias0.unsqueeze(1), p).squeeze(1))


@UNLEARNERS.register("subspace_edit")
class SubspaceEdit(Unlearner[SubspaceEditConfig, None]):
    """Remove from the head (classifier) or the towers' last projection (dual encoder) the directions the
    data to forget occupy and the data to keep do not; the rank is chosen on the validation split."""

    name = "subspace_edit"
    paper = (
        "closed-form null-space projection of the final linear map, after CCUP (Erasing CLIP Memories, "
        "arXiv 2512.14137) and SEMU (arXiv 2502.07587); rank rule ours"
    )
    stage = "training-free"
    requires = MODEL_KINDS
    Config = SubspaceEditConfig

    def run(self, model: Any, run: Run[None], work: WorkFolder | None = None) -> None:
        """Build the edits, choose the rank on validation, apply it; no optimizer, no checkpoint."""
        edits = self.dual_edits(model, run) if run.kind is DualEncoderModel else self.classifier_edits(model, run)
        largest = max(e.basis.shape[0] for e in edits) - 1
        ranks = sorted({max(min(k, largest), 1) for k in self.config.ranks})
        k = self.choose_rank(model, run, edits, ranks)
        for e in edits:
            e.apply(k)
        log.info("subspace_edit: removed a rank-%d subspace from %d linear map(s)", k, len(edits))

    def classifier_edits(self, model: Any, run: Run[None]) -> list[Edit]:
        """One edit per forgotten modality: that modality's block of the head, ``W_m (I - P_k)``."""
        u, gold = run.data.unlearn, retain_subset(run.data.gold_standard, self.config.retain_samples, self.config.seed)
        head, blocks = classifier_head(model, to_device(u.batch(torch.arange(min(len(u), 8))), model_device(model)))
        edits = []
        for m in sorted(run.data.modalities & set(blocks)):
            f_u = modality_features(model, u, m)
            a_u = alignment(f_u, f_u)
            f_r = modality_features(model, gold, m)
            a_r = alignment(f_r, f_r) if len(f_r) else torch.zeros_like(a_u)
            w = head.weight
            g = head_metric(w.detach()[:, blocks[m]])
            basis = specific_directions(g @ (a_u - self.config.gamma * a_r) @ g)
            edits.append(Edit(w, None, w.detach().clone(), None, basis.to(w.device), "in", blocks[m]))
        return edits

    def dual_edits(self, model: Any, run: Run[None]) -> list[Edit]:
        """One edit per tower in ``towers``: its last Linear, ``(I - P_k) W``, the same subspace for both."""
        c, u = self.config, run.data.unlearn
        v_u, t_u = pair_embeddings(model, u)
        v_r, t_r = pair_embeddings(model, retain_subset(run.data.gold_standard, c.retain_samples, c.seed))
        matrix = alignment(v_u, t_u) - c.gamma * alignment(v_r, t_r)
        basis = specific_directions(matrix, concept_direction(model, run))
        probe = complete_pairs(to_device(u.batch(torch.arange(min(len(u), 8))), model_device(model)))
        encoders = {"image": (model.encode_image, probe["image"]), "text": (model.encode_text, probe["text"])}
        edits = []
        for tower in c.towers:
            layer = final_linear(model, *encoders[tower], tower)
            w, b = layer.weight, layer.bias
            bias0 = None if b is None else b.detach().clone()
            edits.append(Edit(w, b, w.detach().clone(), bias0, basis.to(w.device), "out"))
        return edits

    def choose_rank(self, model: Any, run: Run[None], edits: list[Edit], ranks: list[int]) -> int:
        """The smallest rank whose edit raises U's mean task loss to the original's on the validation
        split; the largest rank when none does; the smallest without a validation split."""
        c, val = self.config, run.data.validation
        if val is None or len(val) == 0:
            log.warning("subspace_edit: no validation split given; removing the smallest rank, %d", ranks[0])
            return ranks[0]
        target = mean_task_loss(model, run, val, c.batch_size, c.seed)
        bar = progress(total=len(ranks), desc=self.name, unit="rank", enabled=c.progress)
        try:
            for k in ranks:
                for e in edits:
                    e.apply(k)
                reached = mean_task_loss(model, run, run.data.unlearn, c.batch_size, c.seed) >= target
                bar.update(1)
                if reached:
                    return k
        finally:
            bar.close()
        log.warning("subspace_edit: no rank up to %d brings U to the validation loss %.4f", ranks[-1], target)
        return ranks[-1]
