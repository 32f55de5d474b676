"""Scenario C metric suite: a CLIP-style dual encoder forgets image-caption pairs.

A request forgets U (a random share of the training pairs, every pair naming a concept, or a group);
both modalities of U's pairs are forgotten. Every figure is a `MetricResult`; the forgetting metrics
have ``higher_is_better=None`` because their target is the retrained model's value, not an extreme.
`gap_to_retrain` with `HEADLINE_C` turns a method's records and retrain's into the headline gap.

Retrieval figures depend on the gallery size, so every split is measured in galleries of the test
split's size G (see `gallery_recalls`); the padding pairs, the retain samples and the MIA negatives are
fixed, seeded draws (`SEED`) that depend only on the sizes of the sets, so every model of a request is
measured on the same ones. A candidate whose caption text is the query pair's (`caption_keys`) counts
as a true one: shapes-captions draws its training scenes with replacement, so U and the padding can
hold two images with one caption, and retrieving the other one is no miss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.concepts import ConceptSpace, concept_space, normalise_phrase, phrase_space
from ..data.core import MultimodalDataset
from ..data.tokenizer import WordTokenizer
from ..errors import DataError
from ..models.protocols import DualEncoderModel
from ..optim import make_optimizer, optimizer_step
from ..records.scenarios import HEADLINE_C, SCENARIO_C_METRICS, gap_to_retrain
from ..results import MetricResult
from ..runtime import epoch_batches, eval_mode, model_device, to_device
from .functional import (
    chance_recall,
    fixed_negative_infonce,
    gallery_recalls,
    ks_statistic,
    linear_cka,
    loss_threshold_auc,
    svc_mia_efficacy,
)
from .outputs import EVAL_BATCH, pair_embeddings
from .scenario_a import DEFAULT_RELEARN, RelearnConfig

REQUIRES = (DualEncoderModel,)
"""The model protocol the scenario-C suite needs."""
METRIC_NAMES = SCENARIO_C_METRICS
__all__ = [
    "DEFAULT_RELEARN",
    "HEADLINE_C",
    "METRIC_NAMES",
    "REQUIRES",
    "EmbeddingCache",
    "RelearnConfig",
    "ScenarioCData",
    "gap_to_retrain",
    "scenario_c_metrics",
]

SEED = 0
"""Seed of every fixed draw (retain samples, padding pairs, MIA negatives)."""
NEGATIVES = 127
"""Negative pairs of the loss-threshold attack (`fixed_negative_infonce`): a batch of 128 with the pair."""
CKA_LIMIT = 2000
"""Retain pairs compared by the structure metrics."""

# One stream per draw, so that changing one draw leaves the others as they were.
_RETAIN_GALLERY, _MEMBERS, _NON_MEMBERS, _NEGATIVE_PAIRS, _PAD_VAL, _PAD_TEST, _ZS_RETAIN = range(1, 8)


@dataclass(frozen=True)
class ScenarioCData:
    """The data of one request.

    Attributes:
        unlearn: U, the forgotten pairs (both modalities forgotten).
        retain: R, the training pairs kept.
        test: the test split; its size is the gallery size of every retrieval figure.
        validation: the validation split (padding pairs, MIA negatives, the held-out similarity reference).
        concept: the forgotten concept, for concept requests (enables the zero-shot metrics).
        phrases: the phrases a concept request on a caption set without a built-in concept space (a dataset
            on disk) chooses among (a bench grid's ``concepts``); with at least two of them they are the
            concepts of the zero-shot metrics there (`concept_space_of`). Ignored where the data has a
            built-in concept space.
    """

    unlearn: MultimodalDataset
    retain: MultimodalDataset
    test: MultimodalDataset
    validation: MultimodalDataset | None = None
    concept: str | None = None
    phrases: tuple[str, ...] = ()


def shuffled(n: int, stream: int) -> Tensor:
    """A fixed permutation of ``range(n)`` (seeded by `SEED` and the draw's stream)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + stream))


def draw(n: int, k: int, stream: int) -> Tensor:
    """``k`` of the positions ``0..n-1``: all of them, in order, when ``k >= n``; else a fixed sample."""
    return torch.arange(n) if k >= n else shuffled(n, stream)[:k]


class EmbeddingCache:
    """Each dataset's image and text embeddings under one model, computed once (keyed by identity)."""

    def __init__(self, model: DualEncoderModel) -> None:
        self.model = model
        # the dataset is kept with its embeddings, so that its id cannot be reused while the cache lives
        self._cache: dict[int, tuple[MultimodalDataset, tuple[Tensor, Tensor]]] = {}
        self._scale: float | None = None

    def __call__(self, dataset: MultimodalDataset) -> tuple[Tensor, Tensor]:
        """(N, D) image and (N, D) text embeddings of ``dataset``'s pairs, on the CPU."""
        key = id(dataset)
        if key not in self._cache:
            self._cache[key] = (dataset, pair_embeddings(self.model, dataset))
        return self._cache[key][1]

    def pair_sim(self, dataset: MultimodalDataset) -> Tensor:
        """(N,) cosine similarity of each pair's image and text."""
        img, txt = self(dataset)
        return (img * txt).sum(1)

    def scale(self) -> float:
        """The model's logit scale."""
        if self._scale is None:
            with torch.no_grad():
                self._scale = float(self.model.logit_scale().detach().cpu())
        return self._scale

    def texts(self, ids: Tensor) -> Tensor:
        """(N, D) embeddings of token id rows (prompts), on the CPU."""
        device = model_device(self.model)
        with eval_mode(self.model):
            parts = [self.model.encode_text(b.to(device)).cpu() for b in ids.split(EVAL_BATCH)]
        return torch.cat(parts)


def _cached(model: DualEncoderModel | EmbeddingCache) -> EmbeddingCache:
    return model if isinstance(model, EmbeddingCache) else EmbeddingCache(model)


def _validation(d: ScenarioCData) -> MultimodalDataset | None:
    return d.validation if d.validation is not None and len(d.validation) else None


Pairs = tuple[Tensor, Tensor, Tensor]
"""Image embeddings, text embeddings and caption keys of some pairs (see `caption_keys`)."""


def caption_keys(dataset: MultimodalDataset) -> Tensor:
    """(N,) int64: one key per distinct caption (token id row), so that pairs sharing a caption text are
    interchangeable in retrieval (shapes-captions repeats scenes across pairs and splits)."""
    return torch.tensor([hash(tuple(row)) for row in dataset.inputs["text"].tolist()], dtype=torch.int64)


def pairs_of(cache: EmbeddingCache, dataset: MultimodalDataset, idx: Tensor | None = None) -> Pairs:
    """`Pairs` of ``dataset`` (of its positions ``idx`` when given)."""
    img, txt = cache(dataset)
    keys = caption_keys(dataset)
    return (img, txt, keys) if idx is None else (img[idx], txt[idx], keys[idx])


def gallery(queries: Pairs, size: int, pool: Pairs | None = None) -> dict[str, float]:
    """`gallery_recalls` of ``queries`` in galleries of ``size`` padded from ``pool``; a candidate with the
    query's caption text counts as a true one."""
    if pool is None:
        return gallery_recalls(queries[0], queries[1], size, query_keys=queries[2])
    return gallery_recalls(*queries[:2], size, *pool[:2], query_keys=queries[2], distractor_keys=pool[2])


def padding_pairs(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData, validation: bool = True) -> Pairs:
    """The distractor pairs that pad a gallery, in the order they are used.

    The validation split's pairs in a fixed shuffled order, then the test split's (so validation pairs are
    used first and test pairs only when the validation split is missing or too small); the test split's
    alone with ``validation=False`` (to pad the validation split's own galleries).
    """
    cache = _cached(model)
    val = _validation(d)
    parts = ([(val, _PAD_VAL)] if validation and val is not None else []) + [(d.test, _PAD_TEST)]
    chosen = [pairs_of(cache, ds, shuffled(len(ds), stream)) for ds, stream in parts]
    img, txt, keys = zip(*chosen, strict=True)
    return torch.cat(img), torch.cat(txt), torch.cat(keys)


def _recall_chances(recalls: dict[str, float], size: int) -> dict[str, float]:
    """The chance level of each figure of `gallery_recalls` in galleries of ``size``."""
    chance = {n: chance_recall(size, int(n.rsplit("_r", 1)[1])) for n in recalls if n != "mean_recall"}
    chance["mean_recall"] = sum(chance.values()) / len(chance)
    return chance


def _recall_results(recalls: dict[str, float], split: str, size: int, higher: bool | None) -> list[MetricResult]:
    chance = _recall_chances(recalls, size)
    return [MetricResult(n, split, v, higher, chance[n]) for n, v in recalls.items()]


def retrieval(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData) -> list[MetricResult]:
    """Recall@1/5/10 both ways and their mean on U, R, val and test, all in galleries of G = |test| pairs.

    * ``unlearn``: U's pairs are the queries; fewer than G are padded with `padding_pairs` (validation
      first), more than G are cut into chunks of G (the last one padded) and averaged over queries.
    * ``retain``: a fixed sample of G retain pairs (padded as U when R is smaller).
    * ``val``: the validation split, as U but padded with test pairs (omitted without a validation split).
    * ``test``: the test split, one gallery.
    """
    cache = _cached(model)
    g = len(d.test)
    pool = padding_pairs(cache, d)
    out = _recall_results(gallery(pairs_of(cache, d.unlearn), g, pool), "unlearn", g, None)
    idx = draw(len(d.retain), g, _RETAIN_GALLERY)
    out += _recall_results(gallery(pairs_of(cache, d.retain, idx), g, pool), "retain", g, True)
    val = _validation(d)
    if val is not None:
        val_pool = padding_pairs(cache, d, validation=False)
        out += _recall_results(gallery(pairs_of(cache, val), g, val_pool), "val", g, True)
    out += _recall_results(gallery(pairs_of(cache, d.test), g), "test", g, True)
    return out


def pair_similarity(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData) -> list[MetricResult]:
    """U's true-pair cosine similarities against held-out pairs'.

    ``pair_sim_mean`` on ``unlearn`` and ``val``, and ``pair_sim_ks`` on ``unlearn``: the two-sample KS
    statistic between U's and the validation split's true-pair cosines (the test split's when there is no
    validation split; ``pair_sim_mean`` on ``val`` is then omitted). Retrain's values are the targets.
    """
    cache = _cached(model)
    u = cache.pair_sim(d.unlearn)
    val = _validation(d)
    ref = cache.pair_sim(val if val is not None else d.test)
    out = [MetricResult("pair_sim_mean", "unlearn", float(u.double().mean()), None)]
    if val is not None:
        out.append(MetricResult("pair_sim_mean", "val", float(ref.double().mean()), None))
    out.append(MetricResult("pair_sim_ks", "unlearn", ks_statistic(u, ref), None))
    return out


def _self_mask(data: MultimodalDataset, pool: MultimodalDataset, chosen: Tensor) -> Tensor | None:
    """(N, K) bool: True where negative k (pool row ``chosen[k]``) is pair i of ``data`` itself (by id)."""
    column = {pool.ids[j]: k for k, j in enumerate(chosen.tolist())}
    hits = [(i, column[sid]) for i, sid in enumerate(data.ids) if sid in column]
    if not hits:
        return None
    mask = torch.zeros(len(data), len(chosen), dtype=torch.bool)
    rows, cols = zip(*hits, strict=True)
    mask[list(rows), list(cols)] = True
    return mask


def pair_losses(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData, data: MultimodalDataset) -> Tensor:
    """Each pair's symmetric InfoNCE against the fixed negatives (see `fixed_negative_infonce`).

    The negatives are `NEGATIVES` pairs drawn once (seeded) from the validation split (the test split
    when there is none); a pair that is itself one of them is scored without its copy.
    """
    cache = _cached(model)
    val = _validation(d)
    pool = val if val is not None else d.test
    chosen = draw(len(pool), NEGATIVES, _NEGATIVE_PAIRS)
    n_img, n_txt = cache(pool)
    img, txt = cache(data)
    mask = _self_mask(data, pool, chosen)
    return fixed_negative_infonce(img, txt, n_img[chosen], n_txt[chosen], cache.scale(), mask)


def membership(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData) -> list[MetricResult]:
    """Membership inference on U's pairs.

    * ``mia_svc``: the SalUn protocol on the true-pair cosine similarity: an SVC fitted on members (a
      fixed sample of min(|R|, |test|) retain pairs) against as many non-members (test pairs, all of
      them when R is at least as large), applied to U; the value is the share of U predicted non-member.
    * ``mia_loss_auc``: loss-threshold attack, AUC of U against test (0.5 = indistinguishable), where each
      pair's loss is its symmetric InfoNCE against one fixed set of `NEGATIVES` negative pairs from the
      validation split (fallback: test), so that a pair's loss does not depend on a batch:
      ``0.5 * [CE(scale * v . [t, T_neg], 0) + CE(scale * t . [v, V_neg], 0)]``.
    """
    cache = _cached(model)
    n = min(len(d.retain), len(d.test))
    member = cache.pair_sim(d.retain)[draw(len(d.retain), n, _MEMBERS)]
    non_member = cache.pair_sim(d.test)[draw(len(d.test), n, _NON_MEMBERS)]
    target = cache.pair_sim(d.unlearn)
    auc = loss_threshold_auc(pair_losses(cache, d, d.unlearn), pair_losses(cache, d, d.test))
    return [
        MetricResult("mia_svc", "unlearn", svc_mia_efficacy(member, non_member, target), None),
        MetricResult("mia_loss_auc", "unlearn", auc, None, 0.5),
    ]


def _parse(space: ConceptSpace, data: MultimodalDataset) -> list[tuple[str, ...]] | None:
    return [space.parse(c) for c in data.captions] if data.captions is not None else None


def recognition(scores: Tensor, named: Tensor) -> tuple[Tensor, Tensor]:
    """Zero-shot recognition of the concepts an image names, against the concepts it does not name.

    Args:
        scores: (N, P) similarity of each image to each concept's prompt.
        named: (N, P) bool, the concepts each image's caption names.

    Returns:
        (N, P) bool: ``named`` and the concept's prompt scores higher than the prompt of every concept
        the image does not name (the image's other concepts are not candidates; ties count as misses);
        and (N,) the chance of that, 1 / (1 + concepts not named).
    """
    rivals = scores.masked_fill(named, float("-inf")).max(1, keepdim=True).values
    hits = named & (scores > rivals)
    return hits, 1.0 / (1 + (~named).sum(1).double())


MIN_PHRASES = 2
"""Phrases needed for a phrase concept space: with one, the image has no other concept to be told from."""


def concept_space_of(d: ScenarioCData) -> ConceptSpace | None:
    """The concepts of the zero-shot metrics: the built-in concept space of the training data, else the
    request's phrases (`phrase_space`) when at least `MIN_PHRASES` of them differ once normalised, else None."""
    space = concept_space(d.retain)
    if space is None and len({normalise_phrase(p) for p in d.phrases}) >= MIN_PHRASES:
        return phrase_space(d.phrases)
    return space


def _prompt_ids(model: Any, data: MultimodalDataset, texts: list[str]) -> Tensor:
    """Token rows of ``texts``: through the model's own tokenizer where it has one (``retokenize``, as a
    Hugging Face model does), else through the dataset's word vocabulary."""
    retokenize = getattr(model, "retokenize", None)
    if callable(retokenize):
        return retokenize(texts, data.inputs["text"].shape[1])
    return WordTokenizer(data.vocab or [], data.inputs["text"].shape[1]).encode(texts)


def zero_shot(model: DualEncoderModel | EmbeddingCache, d: ScenarioCData) -> list[MetricResult]:
    """Zero-shot recognition of the forgotten concept and of the others (concept requests only).

    The concepts are those of the data's built-in concept space or, on a caption set without one, the
    request's phrases (``d.phrases``, at least two; `concept_space_of`): a caption names the phrases it
    contains on word boundaries and a phrase's prompt is the phrase itself. The prompts are those of every
    concept the training captions (R and U) name, sorted; they are tokenised by the model's own tokenizer
    where it has one, else by the dataset's word vocabulary (a phrase names a training caption, so its
    words are in that vocabulary, and it is no longer than the captions; other words would become
    ``[UNK]``). An image recognises a concept it names when that prompt beats every prompt of a concept it
    does not name (`recognition`). ``chance`` is the mean of 1 / number of candidate prompts.

    * ``zs_concept`` on ``unlearn`` (U's images naming the concept) and ``test_concept`` (test images
      naming it): the share recognised; retrain's value is the target.
    * ``zs_retained`` on ``retain`` (a fixed sample of up to G = |test| retain images not naming the
      concept) and ``test`` (test images not naming it): per image, the share of the concepts it names
      that are recognised, averaged over images (concepts no training caption names are not scored).

    Returns an empty list when ``d.concept`` is None, or the data has no vocabulary or captions, or no
    concept space and fewer than two phrases (one phrase leaves no other concept to recognise it
    against); a figure whose set of images is empty is omitted.
    """
    space = concept_space_of(d)
    if d.concept is None or space is None or d.retain.vocab is None:
        return []
    u_cs, r_cs, t_cs = _parse(space, d.unlearn), _parse(space, d.retain), _parse(space, d.test) or []
    prompts = sorted({c for cs in (u_cs or []) + (r_cs or []) for c in cs})
    if u_cs is None or r_cs is None or not prompts:
        return []
    cache = _cached(model)
    concept = normalise_phrase(d.concept)
    column = {c: j for j, c in enumerate(prompts)}
    prompt_emb = cache.texts(_prompt_ids(cache.model, d.retain, [space.prompt(c) for c in prompts]))

    def recognise(data: MultimodalDataset, cs: list[tuple[str, ...]], rows: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        named = torch.zeros(len(rows), len(prompts), dtype=torch.bool)
        for r, i in enumerate(rows):
            named[r, [column[c] for c in cs[i] if c in column]] = True
        hits, chance = recognition(cache(data)[0][rows] @ prompt_emb.T, named)
        return hits, chance, named

    out: list[MetricResult] = []
    if concept in column:
        for data, cs, split in ((d.unlearn, u_cs, "unlearn"), (d.test, t_cs, "test_concept")):
            rows = [i for i, names in enumerate(cs) if concept in names]
            if rows:
                hits, chance, _ = recognise(data, cs, rows)
                value = _mean(hits[:, column[concept]])
                out.append(MetricResult("zs_concept", split, value, None, _mean(chance)))
    for data, cs, split in ((d.retain, r_cs, "retain"), (d.test, t_cs, "test")):
        rows = [i for i, names in enumerate(cs) if concept not in names and any(c in column for c in names)]
        if split == "retain":
            rows = [rows[i] for i in draw(len(rows), len(d.test), _ZS_RETAIN).tolist()]
        if rows:
            hits, chance, named = recognise(data, cs, rows)
            per_image = hits.sum(1).double() / named.sum(1).double()
            out.append(MetricResult("zs_retained", split, _mean(per_image), True, _mean(chance)))
    return out


def _mean(values: Tensor) -> float:
    return float(values.double().mean())


def structure(
    model: DualEncoderModel | EmbeddingCache, original: DualEncoderModel, d: ScenarioCData, limit: int = CKA_LIMIT
) -> list[MetricResult]:
    """Linear CKA between the original's and the model's image (and text) embeddings of the first
    ``limit`` retain pairs."""
    cache = _cached(model)
    idx = torch.arange(min(limit, len(d.retain)))
    img, txt = cache(d.retain)
    o_img, o_txt = pair_embeddings(original, d.retain.take(idx))
    return [
        MetricResult("retain_cka_image", "retain", linear_cka(o_img, img[idx])),
        MetricResult("retain_cka_text", "retain", linear_cka(o_txt, txt[idx])),
    ]


def relearn_split(n: int, config: RelearnConfig) -> tuple[Tensor, Tensor]:
    """The positions of U the attack trains on and the rest (scenario A's rule: at least 8, at most n-1)."""
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return perm[:k], perm[k:]


def relearn(model: DualEncoderModel, d: ScenarioCData, config: RelearnConfig | None = None) -> list[MetricResult]:
    """``relearn_mean_recall``: mean recall of part of U after fine-tuning a copy on the other part.

    A copy of the model, in eval mode, every parameter trainable, takes ``config.steps`` AdamW steps of
    its own loss (``model.loss``) on a seeded ``config.fraction`` of U; the rest of U is then measured as
    in `retrieval` (a G-sized gallery padded with `padding_pairs`). A method that only hid the pairs
    recovers them quickly; compare with retrain. Omitted when U has fewer than 2 pairs.
    """
    config = config or DEFAULT_RELEARN
    if len(d.unlearn) < 2:
        return []
    part_idx, rest_idx = relearn_split(len(d.unlearn), config)
    part, rest = d.unlearn.take(part_idx), d.unlearn.take(rest_idx)
    attacker = copy.deepcopy(model).eval()  # eval: normalisation statistics stay those of the model
    attacker.requires_grad_(True)
    opt = make_optimizer(attacker, "adamw", config.lr)
    device = model_device(attacker)
    with torch.enable_grad():
        for step in range(config.steps):
            idx = epoch_batches(len(part), config.batch_size, config.seed, step)[0]
            optimizer_step(attacker, opt, attacker.loss(to_device(part.batch(idx), device)), None)
    cache = EmbeddingCache(attacker)
    g = len(d.test)
    recalls = gallery(pairs_of(cache, rest), g, padding_pairs(cache, d))
    chance = _recall_chances(recalls, g)["mean_recall"]
    return [MetricResult("relearn_mean_recall", "unlearn", recalls["mean_recall"], None, chance)]


def _check(d: ScenarioCData) -> None:
    empty = [n for n, ds in (("unlearn", d.unlearn), ("retain", d.retain), ("test", d.test)) if not len(ds)]
    if empty:
        raise DataError(f"scenario C needs non-empty unlearn, retain and test sets; empty: {', '.join(empty)}")


def scenario_c_metrics(
    model: DualEncoderModel,
    original: DualEncoderModel,
    data: ScenarioCData,
    relearn_config: RelearnConfig | None = None,
) -> list[MetricResult]:
    """Every scenario-C metric of one model (retrieval, similarity, membership, zero-shot, structure, relearning).

    Each set's embeddings are computed once and shared by the metrics that need them.

    Raises:
        DataError: U, R or the test split is empty, or their inputs hold NaN/inf values.
    """
    _check(data)
    cache = EmbeddingCache(model)
    return [
        *retrieval(cache, data),
        *pair_similarity(cache, data),
        *membership(cache, data),
        *zero_shot(cache, data),
        *structure(cache, original, data),
        *relearn(model, data, relearn_config),
    ]
