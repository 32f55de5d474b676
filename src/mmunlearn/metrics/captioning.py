"""Metrics of a generative captioner forgetting image-caption pairs or a concept.

Every figure is measured on captions the model *generates* (`CaptionerModel.generate`, greedy), so the
same functions measure a weight-edited captioner and a decoding-time method that wraps one (an object
with the `CaptionerModel` members whose ``generate`` applies the method). Every figure is a `MetricResult`:

* ``mention_concept``: the share of generated captions that mention the forgotten concept, on the images
  whose true caption names it (splits ``unlearn``: U, and ``test_concept``; the target is retrain's value),
  and on the other images (``retain``: a fixed sample of at most |test| retain images, ``test``: test
  images not naming it; a false mention, lower is better). Concept requests only.
* ``bleu4`` / ``cider``: caption quality against each image's true caption (torchmetrics' corpus BLEU-4,
  pycocoevalcap's CIDEr-D), on the retain sample and the test split.
* ``mention_retained``: over-suppression. Per image, the share of the concepts its true caption names
  (the forgotten one excluded) that the generated caption mentions, averaged over images (``retain``,
  ``test``); ``mention_retained_ratio`` divides it by the original model's value on the same images.
* ``latency_per_token``: seconds per generated token on a fixed batch of test images (the best of
  `LATENCY_REPEATS` timed calls after a warm-up); ``latency_ratio``: the model's over the original's,
  timed in the same call. Wall-clock figures: not deterministic.
* ``relearn_mention`` (concept requests) or ``relearn_bleu4``: a copy fine-tuned for a few steps on part
  of U (scenario A's `RelearnConfig` and split rule), measured on the rest of U.

A caption mentions a concept when the dataset's concept parser (`mmunlearn.data.concepts`) finds it among
the caption's concepts, or when the concept appears as a whole-word phrase in a part of the caption that
is not itself a concept of the dataset (a malformed caption such as "a red circle red" still counts; an
emoji "cat face" does not count as "cat"). A dataset without a concept space matches whole-word phrases.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.concepts import ConceptSpace, concept_space
from ..data.core import MultimodalDataset
from ..errors import DataError
from ..models.protocols import CaptionerModel
from ..optim import make_optimizer, optimizer_step
from ..results import MetricResult
from ..runtime import epoch_batches, eval_mode, model_device, to_device
from .scenario_a import DEFAULT_RELEARN, RelearnConfig

REQUIRES = (CaptionerModel,)
"""The model protocol the captioning suite needs."""
GEN_BATCH = 256
"""Images per `generate` call."""
LATENCY_BATCH = 64
"""Test images of the fixed latency batch (the first ones)."""
LATENCY_REPEATS = 3
"""Timed calls per model; the fastest counts."""
SEED = 0
"""Seed of the fixed retain sample."""
_RETAIN_SAMPLE = 11


# -- generation --------------------------------------------------------------------------------------
def generated_ids(model: CaptionerModel, images: Tensor, batch: int = GEN_BATCH, **kwargs: Any) -> list[Tensor]:
    """The model's generated id rows for ``images``, one (b, T) tensor per batch, on the CPU."""
    device = model_device(model)
    with eval_mode(model):
        return [model.generate(part.to(device), **kwargs).cpu() for part in images.split(batch)]


def generate_captions(model: CaptionerModel, images: Tensor, batch: int = GEN_BATCH, **kwargs: Any) -> list[str]:
    """The model's generated captions of ``images`` (greedy unless ``kwargs`` say otherwise)."""
    return [c for ids in generated_ids(model, images, batch, **kwargs) for c in model.decode(ids)]


class CaptionCache:
    """Each dataset's generated captions under one model, computed once (keyed by identity)."""

    def __init__(self, model: CaptionerModel) -> None:
        self.model = model
        self._cache: dict[int, tuple[MultimodalDataset, list[str]]] = {}

    def __call__(self, dataset: MultimodalDataset) -> list[str]:
        """The generated captions of every image of ``dataset``."""
        key = id(dataset)
        if key not in self._cache:
            self._cache[key] = (dataset, generate_captions(self.model, dataset.inputs["image"]))
        return self._cache[key][1]


# -- concept matching --------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def mentions(caption: str, concept: str, space: ConceptSpace | None, known: Iterable[str] = ()) -> bool:
    """Whether ``caption`` mentions ``concept`` (see the module docstring for the rule).

    Args:
        caption: a generated caption.
        concept: the concept (normalised to lower case, single spaces).
        space: the dataset's concept space, or None (whole-word phrase match).
        known: every concept of the dataset; a caption part equal to one of them is taken as that concept.
    """
    caption, concept = _norm(caption), _norm(concept)
    if space is None:
        return _has_phrase(caption, concept)
    parts = [_norm(p) for p in space.parse(caption)]
    if concept in parts:
        return True
    whole = set(known)
    return any(p not in whole and _has_phrase(p, concept) for p in parts)


def mention_mask(
    captions: Sequence[str], concept: str, space: ConceptSpace | None, known: Iterable[str] = ()
) -> Tensor:
    """(N,) bool: which ``captions`` mention ``concept`` (`mentions`)."""
    whole = frozenset(known)
    return torch.tensor([mentions(c, concept, space, whole) for c in captions], dtype=torch.bool)


def concepts_of(dataset: MultimodalDataset, space: ConceptSpace | None) -> list[tuple[str, ...]]:
    """The concepts each true caption of ``dataset`` names (empty tuples without captions or a space)."""
    if space is None or dataset.captions is None:
        return [() for _ in range(len(dataset))]
    return [tuple(_norm(c) for c in space.parse(cap)) for cap in dataset.captions]


# -- caption quality ---------------------------------------------------------------------------------
def bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (torchmetrics' `BLEUScore`, uniform weights, no smoothing) of the hypotheses."""
    from torchmetrics.text import BLEUScore

    return float(BLEUScore(n_gram=4)(list(hypotheses), [list(r) for r in references]))


def cider(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (pycocoevalcap's `Cider`) of the hypotheses; captions are lower-case word strings
    already, so no PTB tokenisation (which needs Java) is applied."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [_norm(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_norm(h)] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def quality(hypotheses: Sequence[str], references: Sequence[str], split: str) -> list[MetricResult]:
    """``bleu4`` and ``cider`` of generated captions against each image's one true caption."""
    refs = [[r] for r in references]
    return [
        MetricResult("bleu4", split, bleu4(hypotheses, refs)),
        MetricResult("cider", split, cider(hypotheses, refs)),
    ]


def evaluate_captioner(model: CaptionerModel, splits: Mapping[str, MultimodalDataset]) -> list[MetricResult]:
    """``bleu4`` and ``cider`` of the model's generated captions on each split (the standard evaluation).

    Raises:
        DataError: a split has no captions.
    """
    out = []
    for split, data in splits.items():
        if data.captions is None:
            raise DataError(f"split {split!r} has no captions to score the generated ones against")
        out += quality(generate_captions(model, data.inputs["image"]), data.captions, split)
    return out


# -- the suite ---------------------------------------------------------------------------------------
def retain_sample(retain: MultimodalDataset, k: int) -> MultimodalDataset:
    """A fixed sample of ``k`` retain images (all of them, in order, when there are at most ``k``)."""
    if len(retain) <= k:
        return retain
    g = torch.Generator().manual_seed(SEED * 1_000_003 + _RETAIN_SAMPLE)
    return retain.take(torch.randperm(len(retain), generator=g)[:k].sort().values)


def _mean(values: Tensor) -> float:
    return float(values.double().mean())


def concept_mentions(
    cache: CaptionCache,
    sets: Mapping[str, MultimodalDataset],
    concept: str,
    space: ConceptSpace | None,
    known: set[str],
) -> list[MetricResult]:
    """``mention_concept`` on the images naming the concept (U, test) and on the others (retain, test)."""
    out = []
    for split, data in sets.items():
        named = torch.tensor([concept in cs for cs in concepts_of(data, space)], dtype=torch.bool)
        hit = mention_mask(cache(data), concept, space, known)
        if split in ("unlearn", "test") and bool(named.any()):
            out.append(MetricResult("mention_concept", "unlearn" if split == "unlearn" else "test_concept",
                                    _mean(hit[named]), None))  # fmt: skip
        if split in ("retain", "test") and bool((~named).any()):
            out.append(MetricResult("mention_concept", split, _mean(hit[~named]), False))
    return out


def retained_rate(captions: Sequence[str], truth: Sequence[tuple[str, ...]], concept: str | None,
                  space: ConceptSpace | None, known: set[str]) -> float | None:  # fmt: skip
    """Mean over images of the share of their true concepts (``concept`` excluded) that the caption
    mentions; None when no image names another concept."""
    rates = []
    for caption, names in zip(captions, truth, strict=True):
        wanted = sorted({c for c in names if c != concept})
        if wanted:
            rates.append(sum(mentions(caption, c, space, known) for c in wanted) / len(wanted))
    return sum(rates) / len(rates) if rates else None


def over_suppression(
    cache: CaptionCache,
    original: CaptionCache,
    sets: Mapping[str, MultimodalDataset],
    concept: str | None,
    space: ConceptSpace | None,
    known: set[str],
) -> list[MetricResult]:
    """``mention_retained`` of the model on retain and test, and its ratio to the original's."""
    out = []
    for split in ("retain", "test"):
        data = sets[split]
        truth = concepts_of(data, space)
        mine = retained_rate(cache(data), truth, concept, space, known)
        if mine is None:
            continue
        base = retained_rate(original(data), truth, concept, space, known)
        out.append(MetricResult("mention_retained", split, mine))
        if base:
            out.append(MetricResult("mention_retained_ratio", split, mine / base))
    return out


def generated_tokens(ids: Tensor, pad_id: int = 0) -> int:
    """Tokens generated in (B, T) rows: every position that is not padding (EOS counts)."""
    return int((ids != pad_id).sum())


def seconds_per_token(model: CaptionerModel, images: Tensor, repeats: int = LATENCY_REPEATS) -> float:
    """Seconds per generated token of one `generate` call on ``images`` (the fastest of ``repeats``)."""
    device = model_device(model)
    images = images.to(device)
    best = float("inf")
    with eval_mode(model):
        ids = model.generate(images)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            ids = model.generate(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - t0)
    return best / max(1, generated_tokens(ids))


def latency(model: CaptionerModel, original: CaptionerModel, test: MultimodalDataset) -> list[MetricResult]:
    """``latency_per_token`` on the first `LATENCY_BATCH` test images, and its ratio to the original's."""
    images = test.inputs["image"][:LATENCY_BATCH]
    mine = seconds_per_token(model, images)
    out = [MetricResult("latency_per_token", "test", mine, False)]
    base = mine if original is model else seconds_per_token(original, images)
    return [*out, MetricResult("latency_ratio", "test", mine / base, False)]


def relearn_split(n: int, config: RelearnConfig) -> tuple[Tensor, Tensor]:
    """The positions of U the attack trains on and the rest (scenario A's rule: at least 8, at most n-1)."""
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return perm[:k], perm[k:]


def relearned(model: CaptionerModel, part: MultimodalDataset, config: RelearnConfig) -> Any:
    """A copy of ``model`` after ``config.steps`` AdamW steps of its own loss on ``part`` (eval mode)."""
    attacker: Any = copy.deepcopy(model).eval()
    attacker.requires_grad_(True)
    opt = make_optimizer(attacker, "adamw", config.lr)
    device = model_device(attacker)
    with torch.enable_grad():
        for step in range(config.steps):
            idx = epoch_batches(len(part), config.batch_size, config.seed, step)[0]
            optimizer_step(attacker, opt, attacker.loss(to_device(part.batch(idx), device)), None)
    return attacker


def relearn(
    model: CaptionerModel,
    unlearn: MultimodalDataset,
    concept: str | None,
    space: ConceptSpace | None,
    known: set[str],
    config: RelearnConfig,
) -> list[MetricResult]:
    """``relearn_mention`` (mention rate of the concept on the rest of U) for a concept request, else
    ``relearn_bleu4`` (BLEU-4 on the rest of U), after fine-tuning a copy on part of U. Omitted when U has
    fewer than 2 pairs."""
    if len(unlearn) < 2:
        return []
    part_idx, rest_idx = relearn_split(len(unlearn), config)
    rest = unlearn.take(rest_idx)
    captions = generate_captions(relearned(model, unlearn.take(part_idx), config), rest.inputs["image"])
    if concept is not None:
        return [MetricResult("relearn_mention", "unlearn", _mean(mention_mask(captions, concept, space, known)), None)]
    refs = [[c] for c in rest.captions or []]
    return [MetricResult("relearn_bleu4", "unlearn", bleu4(captions, refs), None)] if refs else []


def _check(sets: Mapping[str, MultimodalDataset]) -> None:
    empty = [n for n, ds in sets.items() if not len(ds)]
    if empty:
        raise DataError(f"the captioning metrics need non-empty unlearn, retain and test sets; empty: {empty}")
    bare = [n for n, ds in sets.items() if ds.captions is None]
    if bare:
        raise DataError(f"the captioning metrics need captions; none on: {', '.join(bare)}")


def captioner_metrics(
    model: CaptionerModel,
    original: CaptionerModel,
    data: Any,
    test: MultimodalDataset,
    relearn_config: RelearnConfig | None = None,
) -> list[MetricResult]:
    """Every captioning metric of one model on a request (see the module docstring).

    Args:
        model: the captioner after unlearning (or a decoding-time wrapper of one).
        original: the model before unlearning (over-suppression and latency ratios).
        data: the request's `mmunlearn.unlearn.UnlearnData` (U, R, concept); R must be set.
        test: the test split.
        relearn_config: the relearning attack (default: scenario A's).

    Raises:
        DataError: U, R or the test split is empty or has no captions.
    """
    if data.retain is None:
        raise DataError("the captioning metrics need the retain set R")
    sets = {"unlearn": data.unlearn, "retain": retain_sample(data.retain, len(test)), "test": test}
    _check(sets)
    space = concept_space(data.retain)
    concept = _norm(data.concept) if data.concept else None
    known = {c for ds in (data.unlearn, data.retain) for cs in concepts_of(ds, space) for c in cs}
    cache = CaptionCache(model)
    base = cache if original is model else CaptionCache(original)
    out = concept_mentions(cache, sets, concept, space, known) if concept is not None else []
    out += quality(cache(sets["retain"]), sets["retain"].captions or [], "retain")
    out += quality(cache(test), test.captions or [], "test")
    out += over_suppression(cache, base, sets, concept, space, known)
    out += latency(model, original, test)
    return out + relearn(model, data.unlearn, concept, space, known, relearn_config or DEFAULT_RELEARN)
