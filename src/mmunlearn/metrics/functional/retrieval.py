"""Cross-modal retrieval metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def recall_at_k(similarity: Tensor, targets: Tensor, k: int) -> float:
    """Recall@k: share of queries whose true candidate ranks in the top ``k``.

    Ties are counted against the query: the rank of the target is the number of *other* candidates
    scoring at least as high, so a model that gives every candidate the same score gets chance-level
    recall, not a perfect one.

    Args:
        similarity: (Q, N) scores of each query against each candidate.
        targets: (Q,) int64 index of each query's true candidate.
        k: cut-off, >= 1.

    Returns:
        Recall in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    true = similarity.gather(1, targets.unsqueeze(1))
    at_least = (similarity >= true).sum(dim=1) - 1  # other candidates as good as the target
    return float((at_least < k).double().mean())


def recall_at_k_positives(similarity: Tensor, positives: Tensor, k: int) -> float:
    """Recall@k when a query may have several true candidates (e.g. two images with the same caption).

    A query is a hit when its best-scoring true candidate ranks in the top ``k`` among the candidates
    that are not true: its rank is the number of false candidates scoring at least as high (ties count
    against the query). With one true candidate per query this is `recall_at_k`.

    Args:
        similarity: (Q, N) scores.
        positives: (Q, N) bool, the true candidates of each query (at least one per row).
        k: cut-off, >= 1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    best = similarity.masked_fill(~positives, float("-inf")).max(dim=1, keepdim=True).values
    at_least = ((similarity >= best) & ~positives).sum(dim=1)
    return float((at_least < k).double().mean())


def chance_recall(num_candidates: int, k: int) -> float:
    """Recall@k of random guessing among ``num_candidates`` with one true candidate: k / N."""
    return min(1.0, k / num_candidates)


def retrieval_recalls(image_emb: Tensor, text_emb: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Image-to-text and text-to-image Recall@k of matched pairs (row i of each is a pair).

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (N, D) text embeddings.
        ks: cut-offs.

    Returns:
        ``{"i2t_r1": ..., "t2i_r1": ..., ..., "mean_recall": mean of all of them}``.
    """
    sim = image_emb @ text_emb.T
    targets = torch.arange(len(sim))
    out = {f"i2t_r{k}": recall_at_k(sim, targets, k) for k in ks}
    out.update({f"t2i_r{k}": recall_at_k(sim.T, targets, k) for k in ks})
    out["mean_recall"] = sum(out.values()) / len(out)
    return out


def gallery_recalls(
    image_emb: Tensor,
    text_emb: Tensor,
    size: int,
    distractor_image: Tensor | None = None,
    distractor_text: Tensor | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
    query_keys: Tensor | None = None,
    distractor_keys: Tensor | None = None,
) -> dict[str, float]:
    """`retrieval_recalls` of some query pairs in galleries of a fixed size, so that sets of any size compare.

    The queries (row i of ``image_emb`` and ``text_emb`` is a pair) are cut, in their order, into
    consecutive chunks of ``size``; a chunk shorter than ``size`` (the only chunk when there are fewer
    queries than ``size``, else the last one) is padded with the *first* ``size - len(chunk)`` distractor
    pairs. Each chunk's pairs are queries against the chunk's gallery (its own pairs plus its padding);
    distractors are candidates only, never queries. The recalls are averaged over queries.

    With keys (e.g. one per distinct caption), every candidate with the query's key is a true one
    (`recall_at_k_positives`): an image whose caption text also belongs to another pair of the gallery
    is not failed for retrieving that identical caption. Without keys only the pair itself is true.

    Args:
        image_emb: (N, D) image embeddings of the query pairs, N >= 1.
        text_emb: (N, D) their text embeddings.
        size: gallery size, >= 1.
        distractor_image: (M, D) image embeddings of the padding pairs (pairs of other data), in the
            order they are used.
        distractor_text: (M, D) their text embeddings.
        ks: cut-offs.
        query_keys: (N,) int64 key of each query pair (pairs with equal keys are interchangeable).
        distractor_keys: (M,) int64 keys of the distractor pairs (required with ``query_keys``).

    Returns:
        ``{"i2t_r1": ..., "t2i_r1": ..., ..., "mean_recall": mean of all of them}``, as `retrieval_recalls`.

    Raises:
        ValueError: no queries, ``size < 1``, or fewer distractors than the padding needs.
    """
    n = len(image_emb)
    if n == 0 or size < 1:
        raise ValueError(f"need at least one query and a gallery size >= 1, got {n} queries and size {size}")
    pad = (-n) % size
    d_img = distractor_image if distractor_image is not None else image_emb[:0]
    d_txt = distractor_text if distractor_text is not None else text_emb[:0]
    if len(d_img) != len(d_txt):
        raise ValueError(f"{len(d_img)} distractor images for {len(d_txt)} distractor texts")
    if len(d_img) < pad:
        raise ValueError(f"a gallery of {size} needs {pad} distractor pairs, got {len(d_img)}")
    if (query_keys is None) != (distractor_keys is None) and len(d_img):
        raise ValueError("give keys for both the queries and the distractors, or for neither")
    q_keys = torch.arange(n) if query_keys is None else query_keys
    d_keys = -1 - torch.arange(len(d_img)) if distractor_keys is None else distractor_keys  # never a query's
    totals: dict[str, float] = {}
    for start in range(0, n, size):
        img, txt, keys = image_emb[start : start + size], text_emb[start : start + size], q_keys[start : start + size]
        q = len(img)
        if q < size:
            img, txt = torch.cat([img, d_img[: size - q]]), torch.cat([txt, d_txt[: size - q]])
            keys = torch.cat([keys, d_keys[: size - q]])
        positives = keys[:q, None] == keys[None, :]  # (q, size): the candidates that are true pairs
        sim = img[:q] @ txt.T  # (q, size): the chunk's images against every gallery text
        sim_t = txt[:q] @ img.T  # the chunk's texts against every gallery image
        for k in ks:
            totals[f"i2t_r{k}"] = totals.get(f"i2t_r{k}", 0.0) + q * recall_at_k_positives(sim, positives, k)
        for k in ks:
            totals[f"t2i_r{k}"] = totals.get(f"t2i_r{k}", 0.0) + q * recall_at_k_positives(sim_t, positives, k)
    out = {name: total / n for name, total in totals.items()}
    out["mean_recall"] = sum(out.values()) / len(out)
    return out
