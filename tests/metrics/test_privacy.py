"""Membership-inference and representation metrics against naive references, and MIA validity."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.svm import SVC

from mmunlearn.metrics.functional import auc, linear_cka, loss_threshold_auc, svc_mia_efficacy, true_label_confidence
from mmunlearn.metrics.scenario_a import ScenarioAData, membership
from mmunlearn.models import build_model
from mmunlearn.train import TrainConfig, train_model
from toy import make_av


def naive_auc(pos, neg):
    wins = 0.0
    for p in pos.tolist():
        for n in neg.tolist():
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20), st.integers(0, 9999), st.booleans())
def test_auc_matches_pairwise_count(p, n, seed, ties):
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.randn(p, generator=g), torch.randn(n, generator=g)
    if ties:
        pos, neg = pos.round(), neg.round()
    assert auc(pos, neg) == pytest.approx(naive_auc(pos, neg), abs=1e-12)


def test_loss_threshold_direction():
    assert loss_threshold_auc(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0])) == 1.0
    assert loss_threshold_auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_svc_protocol_matches_a_naive_reimplementation():
    g = torch.Generator().manual_seed(0)
    member = torch.rand(60, generator=g) * 0.3 + 0.7
    non_member = torch.rand(60, generator=g)
    target = torch.rand(40, generator=g)
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(np.array([[v] for v in member.tolist() + non_member.tolist()]), [1] * 60 + [0] * 60)
    predicted_non_member = sum(1 for v in target.tolist() if clf.predict([[v]])[0] == 0)
    assert svc_mia_efficacy(member, non_member, target) == pytest.approx(predicted_non_member / 40)


def test_true_label_confidence():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert true_label_confidence(logits, torch.tensor([1, 1])).tolist() == pytest.approx([0.5, 1 / (1 + np.exp(10))])


def naive_cka(x, y):
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    k, l_ = x.double() @ x.double().T, y.double() @ y.double().T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h)  # noqa: E731
    return float(hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_)))


def test_cka_matches_hsic_definition():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 5, generator=g), torch.randn(30, 7, generator=g)
    assert linear_cka(x, y) == pytest.approx(naive_cka(x, y), abs=1e-9)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    assert linear_cka(x, 3 * x @ q) == pytest.approx(1.0)


CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 16, "width": 8}


def test_membership_scores_separate_seen_from_unseen():
    """A model that memorised a set scores it as a member; one that never saw it does not."""
    data = make_av(96, seed=0)
    # random labels, so that the model must memorise rather than generalise
    data.labels = torch.randint(0, 4, (96,), generator=torch.Generator().manual_seed(5))
    target, rest = data.take(torch.arange(32)), data.take(torch.arange(32, 96))
    test = make_av(64, seed=1, name="test")
    test.labels = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(6))
    cfg = TrainConfig(epochs=40, batch_size=16, lr=3e-3, progress=False)
    seen = train_model(build_model("multimodal-classifier", 0, **CFG), data, cfg).model
    unseen = train_model(build_model("multimodal-classifier", 0, **CFG), rest, cfg).model
    d = ScenarioAData(unlearn=target, retain=rest, test=test)
    s = {r.name: r.value for r in membership(seen, d)}
    u = {r.name: r.value for r in membership(unseen, d)}
    assert s["mia_loss_auc"] > 0.9 and u["mia_loss_auc"] < 0.7
    assert u["mia_svc"] > s["mia_svc"] + 0.3  # the unseen model's U looks like non-members
