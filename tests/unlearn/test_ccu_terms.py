"""CCU's loss terms against naive references that loop over samples."""

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmunlearn.unlearn.ccu import calibration_gate, calibration_targets, inverse_contrastive, kl_to, separation

TAU = 0.2


def feats(n, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def labels(n, classes=3, seed=0):
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed + 1))


def naive_inverse_contrastive(anchors, anchor_y, keys, key_y, tau):
    out = []
    for a, ya in zip(anchors, anchor_y.tolist(), strict=True):
        s = [float(a @ k) / tau for k in keys]
        pos = [j for j, yk in enumerate(key_y.tolist()) if yk != ya]
        neg = [j for j, yk in enumerate(key_y.tolist()) if yk == ya]
        if not pos or not neg:
            out.append(0.0)
            continue
        denom_neg = sum(math.exp(s[n]) for n in neg)
        out.append(-sum(math.log(math.exp(s[p]) / (math.exp(s[p]) + denom_neg)) for p in pos) / len(pos))
    return torch.tensor(out, dtype=torch.float64)


def naive_separation(x, y, negatives, tau):
    everything = list(x) + list(negatives)
    losses = []
    for i, a in enumerate(x):
        s = [float(a @ k) / tau for k in everything]
        denom = sum(math.exp(s[j]) for j in range(len(everything)) if j != i)
        pos = [j for j in range(len(x)) if j != i and y[j] == y[i]]
        if pos:
            losses.append(-sum(math.log(math.exp(s[p]) / denom) for p in pos) / len(pos))
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


def naive_kl(target, logits):
    total = 0.0
    for t, z in zip(target.tolist(), logits.tolist(), strict=True):
        pt = [math.exp(v) / sum(math.exp(w) for w in t) for v in t]
        pz = [math.exp(v) / sum(math.exp(w) for w in z) for v in z]
        total += sum(p * (math.log(p) - math.log(q)) for p, q in zip(pt, pz, strict=True))
    return torch.tensor(total / len(target), dtype=torch.float64)


def naive_targets(unlearn, validation):
    """Rank r among |U| (ties broken by position), q = r / (|U| - 1), nearest rank in sorted V (exact arithmetic)."""
    u, v = unlearn.tolist(), sorted(validation.tolist())
    order = sorted(range(len(u)), key=lambda i: (u[i], i))
    out = [0.0] * len(u)
    for r, i in enumerate(order):
        out[i] = v[round(Fraction(r * (len(v) - 1), max(1, len(u) - 1)))]
    return torch.tensor(out, dtype=validation.dtype)


def test_inverse_contrastive_matches_naive():
    anchors, ay, keys, ky = feats(5, seed=1), labels(5, seed=1), feats(12, seed=2), labels(12, seed=2)
    assert_close(inverse_contrastive(anchors, ay, keys, ky, TAU), naive_inverse_contrastive(anchors, ay, keys, ky, TAU))


def test_inverse_contrastive_is_zero_without_positive_or_negative_keys():
    keys, ky = feats(4, seed=3), torch.tensor([0, 0, 1, 1])
    anchors, ay = feats(3, seed=4), torch.tensor([0, 2, 1])
    only_own = inverse_contrastive(anchors[:1], ay[:1], keys[:2], ky[:2], TAU)  # no key of another class
    assert_close(only_own, torch.zeros(1, dtype=torch.float64))
    per = inverse_contrastive(anchors, ay, keys, ky, TAU)  # class 2 has no own-class key: no negatives
    assert per[1] == 0 and per[0] > 0 and per[2] > 0
    assert_close(per, naive_inverse_contrastive(anchors, ay, keys, ky, TAU))


def test_inverse_contrastive_gradient_reaches_anchors_and_is_finite():
    keys, ky = feats(6, seed=5), torch.tensor([0, 0, 1, 1, 2, 2])
    anchors = feats(4, seed=6).requires_grad_()
    ay = torch.tensor([0, 1, 3, 2])  # class 3 has no own-class key: a zero term, still a finite gradient
    inverse_contrastive(anchors, ay, keys, ky, TAU).sum().backward()
    assert torch.isfinite(anchors.grad).all()
    assert (anchors.grad[[0, 1, 3]].norm(dim=1) > 0).all() and (anchors.grad[2] == 0).all()


def test_inverse_contrastive_gradient_matches_finite_differences():
    keys, ky = feats(6, seed=7), torch.tensor([0, 0, 1, 1, 2, 2])
    anchors = feats(3, seed=8).requires_grad_()
    ay = torch.tensor([0, 1, 2])
    assert torch.autograd.gradcheck(lambda a: inverse_contrastive(a, ay, keys, ky, TAU), (anchors,))


def test_moving_an_anchor_toward_another_class_lowers_its_loss():
    e = torch.eye(4, dtype=torch.float64)
    keys = torch.stack([e[0], F.normalize(e[0] + e[2], dim=0), e[1], e[3]])
    ky = torch.tensor([0, 0, 1, 2])
    path = [F.normalize((1 - t) * e[0] + t * e[1], dim=0) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]  # toward key 2
    loss = inverse_contrastive(torch.stack(path), torch.zeros(5, dtype=torch.long), keys, ky, TAU)
    assert (loss.diff() < 0).all()


def test_separation_matches_naive():
    x, y, negatives = feats(9, seed=9), labels(9, seed=9), feats(4, seed=10)
    assert_close(separation(x, y, negatives, TAU), naive_separation(x, y, negatives, TAU))


def test_separation_without_negatives_and_with_singleton_classes():
    x, y = feats(6, seed=11), torch.tensor([0, 0, 1, 1, 1, 2])  # class 2's anchor has no positive: left out
    assert_close(separation(x, y, x[:0], TAU), naive_separation(x, y, x[:0], TAU))


def test_separation_is_zero_when_no_anchor_has_a_positive():
    x = feats(3, seed=12).requires_grad_()
    loss = separation(x, torch.tensor([0, 1, 2]), feats(2, seed=13), TAU)
    loss.backward()
    assert loss == 0 and torch.isfinite(x.grad).all()


def test_separation_negatives_only_enlarge_the_denominator():
    x, y, negatives = feats(6, seed=14), torch.tensor([0, 0, 1, 1, 2, 2]), feats(3, seed=15)
    assert separation(x, y, negatives, TAU) > separation(x, y, negatives[:0], TAU)


def test_kl_to_matches_naive_and_is_zero_on_itself():
    g = torch.Generator().manual_seed(16)
    target, logits = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 2 for _ in range(2))
    assert_close(kl_to(target, logits), naive_kl(target, logits))
    assert_close(kl_to(logits, logits + 3.0), torch.zeros((), dtype=torch.float64))  # shift-invariant softmax


def test_calibration_targets_match_naive():
    g = torch.Generator().manual_seed(17)
    u, v = torch.rand(7, generator=g), torch.rand(11, generator=g)  # q * 10 = 5r / 3: never a .5 tie
    assert_close(calibration_targets(u, v), naive_targets(u, v))


def test_calibration_targets_extremes_and_monotone():
    u, v = torch.tensor([0.3, 2.0, 0.1, 0.9]), torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    t = calibration_targets(u, v)
    assert t[2] == 1.0 and t[1] == 5.0  # the lowest loss of U gets V's minimum, the highest V's maximum
    assert (t[u.argsort()].diff() >= 0).all()


def test_calibration_targets_with_tied_losses():
    u, v = torch.tensor([0.5, 0.2, 0.5, 0.5, 0.9]), torch.arange(9.0)
    t = calibration_targets(u, v)
    # ties may be ranked in any order among themselves: the same targets, and higher losses never get lower ones
    assert sorted(t.tolist()) == sorted(naive_targets(u, v).tolist())
    assert t[1] == 0.0 and t[4] == 8.0 and set(t[[0, 2, 3]].tolist()) == {2.0, 4.0, 6.0}


def test_calibration_targets_of_a_single_sample():
    """|U| = 1: the lone sample has rank 0, q = 0, so it is matched to V's smallest loss."""
    assert calibration_targets(torch.tensor([7.0]), torch.tensor([3.0, 1.0, 2.0])).tolist() == [1.0]


def test_calibration_gate_is_strictly_below_target():
    now, targets = torch.tensor([0.1, 0.5, 0.9, 0.5]), torch.tensor([0.5, 0.5, 0.5, 0.6])
    naive = torch.tensor([1.0 if a < b else 0.0 for a, b in zip(now.tolist(), targets.tolist(), strict=True)])
    assert_close(calibration_gate(now, targets), naive)
    assert calibration_gate(now, targets).tolist() == [1.0, 0.0, 0.0, 1.0]
