"""Every metric against a short naive reference."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmunlearn.metrics.functional import accuracy, chance_recall, recall_at_k, retrieval_recalls


def naive_accuracy(logits, labels):
    hits = 0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        hits += max(range(len(row)), key=lambda j: (row[j], -j)) == y
    return hits / len(labels)


def naive_recall(sim, targets, k):
    """Rank by counting, ties against the query."""
    hits = 0
    for q in range(sim.shape[0]):
        t = int(targets[q])
        better_or_equal = sum(1 for c in range(sim.shape[1]) if c != t and sim[q, c] >= sim[q, t])
        hits += better_or_equal < k
    return hits / sim.shape[0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(2, 6), st.integers(0, 10_000))
def test_accuracy_matches_naive(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    assert abs(accuracy(logits, labels) - naive_accuracy(logits, labels)) < 1e-9


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 25), st.integers(1, 12), st.integers(0, 10_000), st.booleans())
def test_recall_matches_naive(n, k, seed, coarse):
    g = torch.Generator().manual_seed(seed)
    sim = torch.randn(n, n, generator=g)
    if coarse:  # many ties
        sim = sim.round()
    targets = torch.randperm(n, generator=g)
    assert abs(recall_at_k(sim, targets, k) - naive_recall(sim, targets, k)) < 1e-9


def test_constant_scores_are_not_a_perfect_recall():
    sim = torch.zeros(100, 100)
    assert recall_at_k(sim, torch.arange(100), 1) == 0.0
    assert chance_recall(100, 1) == 0.01


def test_perfect_and_random_embeddings():
    e = torch.nn.functional.normalize(torch.randn(50, 16), dim=1)
    r = retrieval_recalls(e, e)
    assert r["i2t_r1"] == r["t2i_r1"] == 1.0 and r["mean_recall"] == 1.0
    g = torch.Generator().manual_seed(0)
    noise = retrieval_recalls(torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g))
    assert noise["i2t_r10"] < 0.05  # chance is 0.01
