"""Scenario-C suite: every metric against a short naive reference, the gallery rules, and validity."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC
from torch import nn

from mmunlearn.data.concepts import concept_space, naming
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.data.tokenizer import WordTokenizer
from mmunlearn.errors import DataError
from mmunlearn.metrics.functional import fixed_negative_infonce, gallery_recalls, ks_statistic, retrieval_recalls
from mmunlearn.metrics.scenario_c import (
    NEGATIVES,
    EmbeddingCache,
    RelearnConfig,
    ScenarioCData,
    draw,
    pair_losses,
    relearn,
    scenario_c_metrics,
    shuffled,
    zero_shot,
)
from mmunlearn.records.scenarios import HEADLINE_C, SCENARIO_C_METRICS, gap_to_retrain
from mmunlearn.train import TrainConfig, train_model
from toy import make_pairs, tiny_dual_encoder

KS = (1, 5, 10)
# The streams of scenario_c's fixed draws (its private constants, restated: a change there must show here).
RETAIN_GALLERY, MEMBERS, NON_MEMBERS, NEGATIVE_PAIRS, PAD_VAL, PAD_TEST, ZS_RETAIN = range(1, 8)


# -- naive references ---------------------------------------------------------------------------------
def naive_gallery_recalls(qi, qt, size, di=None, dt=None, qk=None, dk=None):
    """Chunk, pad, and rank every query by counting; ties count against the query. With keys, every
    candidate with the query's key is a true one and the best of them is ranked among the others."""
    qk = list(range(len(qi))) if qk is None else list(qk)
    qi, qt = qi.tolist(), qt.tolist()
    di, dt = (di.tolist(), dt.tolist()) if di is not None else ([], [])
    dk = [f"d{i}" for i in range(len(di))] if dk is None else list(dk)
    hits = {f"{d}_r{k}": 0 for d in ("i2t", "t2i") for k in KS}
    for start in range(0, len(qi), size):
        gi, gt, gk = qi[start : start + size], qt[start : start + size], qk[start : start + size]
        m = len(gi)
        gi, gt, gk = gi + di[: size - m], gt + dt[: size - m], gk + dk[: size - m]
        assert len(gi) == size
        for q in range(m):
            for direction, query, gallery in (("i2t", gi[q], gt), ("t2i", gt[q], gi)):
                s = [float(np.dot(np.float32(query), np.float32(c))) for c in gallery]
                best = max(s[c] for c in range(size) if gk[c] == gk[q])
                rank = sum(1 for c in range(size) if gk[c] != gk[q] and s[c] >= best)
                for k in KS:
                    hits[f"{direction}_r{k}"] += rank < k
    out = {n: h / len(qi) for n, h in hits.items()}
    out["mean_recall"] = sum(out.values()) / len(out)
    return out


def naive_pair_loss(v, t, nv, nt, scale, skip=()):
    """0.5 * [CE(scale v.[t, T_neg]) + CE(scale t.[v, V_neg])], negatives in ``skip`` left out, by loops."""

    def ce(logits):
        top = max(logits)
        return -logits[0] + top + math.log(sum(math.exp(x - top) for x in logits))

    keep = [k for k in range(len(nv)) if k not in skip]
    i2t = [scale * float(np.dot(v, t))] + [scale * float(np.dot(v, nt[k])) for k in keep]
    t2i = [scale * float(np.dot(t, v))] + [scale * float(np.dot(t, nv[k])) for k in keep]
    return 0.5 * (ce(i2t) + ce(t2i))


def naive_cka(x, y):
    """HSIC with centred Gram matrices."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def embed(model, data):
    model.eval()
    with torch.no_grad():
        return model.encode_image(data.inputs["image"]), model.encode_text(data.inputs["text"])


def caps(data, idx=None):
    """The captions of ``data`` (at positions ``idx``): the naive key of a pair."""
    return list(data.captions) if idx is None else [data.captions[i] for i in idx.tolist()]


def values(results):
    return {(r.name, r.split): r.value for r in results}


# -- functional ---------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 9999), st.booleans())
def test_ks_statistic_matches_scipy(n, m, seed, ties):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, generator=g), torch.randn(m, generator=g) + 0.3
    if ties:
        a, b = (a * 2).round(), (b * 2).round()
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a.numpy(), b.numpy()).statistic, abs=1e-12)


def test_ks_statistic_edges():
    x = torch.tensor([0.1, 0.5, 0.5])
    assert ks_statistic(x, x) == 0.0
    assert ks_statistic(torch.zeros(3), torch.ones(2)) == 1.0
    with pytest.raises(ValueError):
        ks_statistic(torch.zeros(0), x)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 12), st.integers(0, 9999))
def test_gallery_recalls_match_naive(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    # small integer embeddings: exact dot products, many ties
    qi, qt = torch.randint(-2, 3, (n, 4), generator=g).float(), torch.randint(-2, 3, (n, 4), generator=g).float()
    di, dt = torch.randint(-2, 3, (size, 4), generator=g).float(), torch.randint(-2, 3, (size, 4), generator=g).float()
    got = gallery_recalls(qi, qt, size, di, dt)
    want = naive_gallery_recalls(qi, qt, size, di, dt)
    assert list(got) == list(want)
    assert got == pytest.approx(want, abs=1e-12)
    # shared captions: keys drawn from a few values, shared between queries and distractors
    qk, dk = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 4, (size,), generator=g)
    got = gallery_recalls(qi, qt, size, di, dt, query_keys=qk, distractor_keys=dk)
    want = naive_gallery_recalls(qi, qt, size, di, dt, qk.tolist(), dk.tolist())
    assert got == pytest.approx(want, abs=1e-12)


def test_gallery_of_the_set_size_is_retrieval_recalls():
    g = torch.Generator().manual_seed(0)
    img, txt = F.normalize(torch.randn(20, 8, generator=g), dim=1), F.normalize(torch.randn(20, 8, generator=g), dim=1)
    assert gallery_recalls(img, txt, 20) == retrieval_recalls(img, txt)


def test_gallery_padding_uses_the_first_distractors_and_they_are_never_queries():
    e = torch.eye(6)
    q_img, q_txt = e[:2], e[:2]  # two perfect pairs
    decoy = e[0:1]  # a distractor pair identical to query 0: a tie that costs query 0 its rank
    far = e[2:6]
    # the decoy comes first: it is in the gallery of 4 (2 queries + 2 distractors)
    first = gallery_recalls(q_img, q_txt, 4, torch.cat([decoy, far]), torch.cat([decoy, far]))
    assert first["i2t_r1"] == first["t2i_r1"] == 0.5  # query 0 ties with the decoy; the decoy is not a query
    # the decoy comes after the two pairs the padding needs: never in the gallery
    last = gallery_recalls(q_img, q_txt, 4, torch.cat([far[:2], decoy]), torch.cat([far[:2], decoy]))
    assert last["i2t_r1"] == last["t2i_r1"] == 1.0


def test_gallery_chunks_larger_sets_and_averages_over_queries():
    e = torch.eye(5)
    img = torch.cat([e[:3], e[0:1], e[3:5]])  # pair 3 duplicates pair 0
    txt = img.clone()
    one = gallery_recalls(img, txt, 6)  # one gallery: pairs 0 and 3 tie
    assert one["i2t_r1"] == pytest.approx(4 / 6) and one["i2t_r5"] == 1.0
    two = gallery_recalls(img, txt, 3)  # chunks {0,1,2} and {3,4,5}: the duplicates never meet
    assert two["i2t_r1"] == two["t2i_r1"] == 1.0
    # 6 queries in galleries of 4: chunk {0..3} (the tie), chunk {4,5} padded with 2 distractors
    pad = torch.eye(5)[3:5] * -1
    four = gallery_recalls(img, txt, 4, pad, pad)
    assert four["i2t_r1"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="distractor"):
        gallery_recalls(img, txt, 4, pad[:1], pad[:1])
    with pytest.raises(ValueError):
        gallery_recalls(img, txt, 8)


def test_fixed_negative_infonce_matches_naive():
    g = torch.Generator().manual_seed(1)
    v, t = F.normalize(torch.randn(6, 5, generator=g), dim=1), F.normalize(torch.randn(6, 5, generator=g), dim=1)
    nv, nt = F.normalize(torch.randn(4, 5, generator=g), dim=1), F.normalize(torch.randn(4, 5, generator=g), dim=1)
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[2, 1] = mask[5, 3] = True
    got = fixed_negative_infonce(v, t, nv, nt, 7.5, mask)
    vn, tn, nvn, ntn = v.double().numpy(), t.double().numpy(), nv.double().numpy(), nt.double().numpy()
    for i in range(6):
        skip = {k for k in range(4) if mask[i, k]}
        assert float(got[i]) == pytest.approx(naive_pair_loss(vn[i], tn[i], nvn, ntn, 7.5, skip), rel=1e-9)
    # the loss of a pair does not depend on the other pairs scored with it
    assert torch.allclose(fixed_negative_infonce(v[:1], t[:1], nv, nt, 7.5), got[:1])


# -- the suite on random-init models ------------------------------------------------------------------
def _request(kind):
    train, val, test = make_pairs(96, 0), make_pairs(40, 1, "val"), make_pairs(32, 2, "test")
    if kind == "concept":  # 16 pairs < G = 32
        u = train.take(torch.tensor(naming(train, "red circle")))
        concept = "red circle"
    else:  # 40 pairs > G: a chunk of 32 and one of 8 padded with 24 validation pairs
        u = train.take(torch.arange(40))
        concept = None
    return ScenarioCData(u, train.without(u.ids), test, val, concept)


@pytest.fixture(scope="module", params=["concept", "random"])
def suite(request):
    d = _request(request.param)
    model, original = tiny_dual_encoder(d.retain, 0), tiny_dual_encoder(d.retain, 1)
    return model, original, d, scenario_c_metrics(model, original, d)


def test_names_directions_and_determinism(suite):
    model, original, d, results = suite
    keys = [(r.name, r.split) for r in results]
    assert len(keys) == len(set(keys))
    assert {r.name for r in results} <= set(SCENARIO_C_METRICS)
    for r in results:
        forget = r.split in ("unlearn", "test_concept") or r.name.startswith("pair_sim")
        assert (r.higher_is_better is None) == forget, r
    assert values(scenario_c_metrics(model, original, d)) == values(results)
    has_zs = any(r.name.startswith("zs_") for r in results)
    assert has_zs == (d.concept is not None)  # concept metrics only for concept requests
    expected = {k for k in HEADLINE_C if not k[0].startswith("zs_") or d.concept is not None}
    assert expected <= set(keys)
    assert gap_to_retrain(results, results, HEADLINE_C) == 0.0


def test_recalls_match_naive_galleries(suite):
    model, _, d, results = suite
    got = values(results)
    g = len(d.test)
    u, r, val, test = (embed(model, x) for x in (d.unlearn, d.retain, d.validation, d.test))
    pv, pt = shuffled(len(d.validation), PAD_VAL), shuffled(g, PAD_TEST)
    pad = torch.cat([val[0][pv], test[0][pt]]), torch.cat([val[1][pv], test[1][pt]])
    pad_keys = caps(d.validation, pv) + caps(d.test, pt)
    rs = draw(len(d.retain), g, RETAIN_GALLERY)
    assert len(rs) == g and len(set(rs.tolist())) == g
    assert len(set(caps(d.unlearn) + pad_keys)) < len(caps(d.unlearn) + pad_keys)  # shared captions exist
    cases = {
        "unlearn": naive_gallery_recalls(*u, g, *pad, caps(d.unlearn), pad_keys),
        "retain": naive_gallery_recalls(r[0][rs], r[1][rs], g, *pad, caps(d.retain, rs), pad_keys),
        "val": naive_gallery_recalls(*val, g, test[0][pt], test[1][pt], caps(d.validation), caps(d.test, pt)),
        "test": naive_gallery_recalls(*test, g, qk=caps(d.test)),
    }
    for split, want in cases.items():
        for name, value in want.items():
            assert got[(name, split)] == pytest.approx(value, abs=1e-9), (name, split)
    chance = {(x.name, x.split): x.chance for x in results}
    assert chance[("i2t_r5", "unlearn")] == 5 / g and chance[("mean_recall", "test")] == pytest.approx(16 / 3 / g)


def test_similarity_and_membership_match_naive(suite):
    model, _, d, results = suite
    got = values(results)
    cos = {}
    for name, x in (("u", d.unlearn), ("r", d.retain), ("val", d.validation), ("test", d.test)):
        i, t = (a.double().numpy() for a in embed(model, x))
        cos[name] = np.array([float(np.dot(i[j], t[j])) for j in range(len(i))])
    assert got[("pair_sim_mean", "unlearn")] == pytest.approx(cos["u"].mean(), abs=1e-6)
    assert got[("pair_sim_mean", "val")] == pytest.approx(cos["val"].mean(), abs=1e-6)
    assert got[("pair_sim_ks", "unlearn")] == pytest.approx(ks_2samp(cos["u"], cos["val"]).statistic, abs=1e-6)
    # SalUn SVC: min(|R|, |test|) = |test| members, every test pair a non-member
    n = len(d.test)
    members = cos["r"][draw(len(d.retain), n, MEMBERS).numpy()]
    x = np.concatenate([members, cos["test"]]).reshape(-1, 1).astype(np.float32)
    y = np.r_[np.ones(n), np.zeros(n)]
    svc = SVC(C=3, gamma="auto").fit(x, y)
    want = 1 - svc.predict(cos["u"].reshape(-1, 1).astype(np.float32)).mean()
    assert got[("mia_svc", "unlearn")] == pytest.approx(want, abs=1e-9)
    # loss-threshold AUC with the fixed validation negatives
    neg = draw(len(d.validation), NEGATIVES, NEGATIVE_PAIRS).numpy()
    assert len(neg) == len(d.validation)  # fewer than 127 validation pairs: all of them
    nv, nt = (a.double().numpy()[neg] for a in embed(model, d.validation))
    scale = float(model.logit_scale().detach())

    def losses(x):
        i, t = (a.double().numpy() for a in embed(model, x))
        return [naive_pair_loss(i[j], t[j], nv, nt, scale) for j in range(len(i))]

    lu, lt = losses(d.unlearn), losses(d.test)
    want_auc = roc_auc_score(np.r_[np.ones(len(lu)), np.zeros(len(lt))], -np.r_[lu, lt])
    assert got[("mia_loss_auc", "unlearn")] == pytest.approx(want_auc, abs=1e-9)


def test_zero_shot_matches_naive(suite):
    model, _, d, results = suite
    if d.concept is None:  # concept metrics only for concept requests
        assert not any(r.name.startswith("zs_") for r in results)
        return
    got = {(r.name, r.split): r for r in results}
    space = concept_space(d.retain)
    cs = {name: [space.parse(c) for c in x.captions] for name, x in (("u", d.unlearn), ("r", d.retain))}
    prompts = sorted({c for x in cs["u"] + cs["r"] for c in x})
    model.eval()
    with torch.no_grad():
        p = model.encode_captions([space.prompt(c) for c in prompts]).numpy()  # the model's own tokenizer

    def recognised(image, names, concept):
        s = {c: float(np.dot(image, p[j])) for j, c in enumerate(prompts)}
        return all(s[concept] > s[c] for c in prompts if c not in names)

    def chance(names):
        return 1 / (1 + sum(c not in names for c in prompts))

    def check(x, rows, name, split, concepts_of):
        img = embed(model, x)[0].numpy()
        scores, chances = [], []
        for i in rows:
            names = space.parse(x.captions[i])
            known = [c for c in concepts_of(names) if c in prompts]
            scores.append(np.mean([recognised(img[i], names, c) for c in known]))
            chances.append(chance(names))
        assert got[(name, split)].value == pytest.approx(np.mean(scores), abs=1e-9), (name, split)
        assert got[(name, split)].chance == pytest.approx(np.mean(chances), abs=1e-9)

    c = d.concept
    test_cs = [space.parse(x) for x in d.test.captions]
    check(d.unlearn, range(len(d.unlearn)), "zs_concept", "unlearn", lambda names: [c])
    check(d.test, [i for i, x in enumerate(test_cs) if c in x], "zs_concept", "test_concept", lambda names: [c])
    r_rows = [i for i, x in enumerate(cs["r"]) if c not in x]
    assert len(r_rows) > len(d.test)  # a sample of G of them
    r_rows = [r_rows[i] for i in draw(len(r_rows), len(d.test), ZS_RETAIN)]
    check(d.retain, r_rows, "zs_retained", "retain", lambda names: names)
    t_rows = [i for i, x in enumerate(test_cs) if c not in x and any(y in prompts for y in x)]
    check(d.test, t_rows, "zs_retained", "test", lambda names: names)


def test_structure_matches_naive_and_is_one_for_the_same_model(suite):
    model, original, d, results = suite
    got = values(results)
    (mi, mt), (oi, ot) = embed(model, d.retain), embed(original, d.retain)
    assert got[("retain_cka_image", "retain")] == pytest.approx(naive_cka(oi, mi), abs=1e-9)
    assert got[("retain_cka_text", "retain")] == pytest.approx(naive_cka(ot, mt), abs=1e-9)
    same = values(scenario_c_metrics(model, copy.deepcopy(model), d))
    assert same[("retain_cka_image", "retain")] == pytest.approx(1.0, abs=1e-9)
    assert same[("retain_cka_text", "retain")] == pytest.approx(1.0, abs=1e-9)


def test_relearn_matches_a_naive_attack(suite):
    model, _, d, _ = suite
    config = RelearnConfig(steps=4, lr=1e-3, batch_size=8, seed=3)
    n = len(d.unlearn)
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    part, rest = d.unlearn.take(perm[:k]), d.unlearn.take(perm[k:])
    attacker = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(attacker.parameters(), lr=config.lr, weight_decay=0.0)
    for step in range(config.steps):
        order = torch.randperm(k, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + step))
        idx = order[: config.batch_size]
        i, t = attacker.encode_image(part.inputs["image"][idx]), attacker.encode_text(part.inputs["text"][idx])
        logits = attacker.logit_scale() * i @ t.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = len(d.test)
    val, test = embed(attacker, d.validation), embed(attacker, d.test)
    pv, pt = shuffled(len(d.validation), PAD_VAL), shuffled(g, PAD_TEST)
    pad = torch.cat([val[0][pv], test[0][pt]]), torch.cat([val[1][pv], test[1][pt]])
    pad_keys = caps(d.validation, pv) + caps(d.test, pt)
    want = naive_gallery_recalls(*embed(attacker, rest), g, *pad, caps(rest), pad_keys)["mean_recall"]
    (got,) = relearn(model, d, config)
    assert (got.name, got.split, got.higher_is_better) == ("relearn_mean_recall", "unlearn", None)
    assert got.value == pytest.approx(want, abs=1e-9)
    assert relearn(model, d, config)[0].value == got.value  # deterministic, and the model is untouched


# -- omissions, fallbacks, refusals -------------------------------------------------------------------
def test_without_validation_the_test_split_stands_in():
    d = _request("concept")
    d = ScenarioCData(d.unlearn, d.retain, d.test)  # no validation, no concept
    model = tiny_dual_encoder(d.retain, 0)
    results = scenario_c_metrics(model, model, d, RelearnConfig(steps=1))
    keys = {(r.name, r.split) for r in results}
    assert not any(s == "val" for _, s in keys) and not any(n.startswith("zs_") for n, _ in keys)
    u, test = embed(model, d.unlearn), embed(model, d.test)
    ks = ks_2samp((u[0] * u[1]).sum(1).numpy(), (test[0] * test[1]).sum(1).numpy()).statistic
    assert values(results)[("pair_sim_ks", "unlearn")] == pytest.approx(ks, abs=1e-6)
    pt = shuffled(len(d.test), PAD_TEST)  # U's galleries are padded with test pairs
    want = naive_gallery_recalls(*u, len(d.test), test[0][pt], test[1][pt], caps(d.unlearn), caps(d.test, pt))
    assert values(results)[("mean_recall", "unlearn")] == pytest.approx(want["mean_recall"], abs=1e-9)
    # the MIA negatives come from the test split; a test pair is scored without its own copy
    losses = pair_losses(EmbeddingCache(model), d, d.test)
    neg = draw(len(d.test), NEGATIVES, NEGATIVE_PAIRS).numpy()
    i, t = (a.double().numpy() for a in test)
    scale = float(model.logit_scale().detach())
    for j in (0, 5):
        skip = {int(np.flatnonzero(neg == j)[0])}
        assert float(losses[j]) == pytest.approx(naive_pair_loss(i[j], t[j], i[neg], t[neg], scale, skip), rel=1e-9)


def test_empty_sets_are_refused():
    d = _request("random")
    model = tiny_dual_encoder(d.retain, 0)
    with pytest.raises(DataError, match="unlearn"):
        scenario_c_metrics(model, model, ScenarioCData(d.unlearn.take(torch.arange(0)), d.retain, d.test))


class BagOfWords(nn.Module):
    """A hand-built dual encoder: a text is the normalised count of its words, an image is its pixels."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def encode_image(self, images):
        return F.normalize(images.flatten(1), dim=1)

    def encode_text(self, ids, token_embeddings=None):
        counts = F.one_hot(ids, self.vocab_size).sum(1).float()
        counts[:, :2] = 0  # padding and unknown words
        return F.normalize(counts, dim=1)

    def logit_scale(self):
        return torch.tensor(10.0)


def _hand_built(split, rows, vocab):
    """Pairs whose image is a bag of the given words (so each prompt's score is known)."""
    tok = WordTokenizer(vocab, 8)
    captions = [c for c, _ in rows]
    images = torch.stack([tok.encode([" ".join(w)])[0].bincount(minlength=len(vocab)).float() for _, w in rows])
    images[:, :2] = 0
    return MultimodalDataset(
        [f"{split}-{i}" for i in range(len(rows))],
        {"image": images.view(len(rows), 1, 1, -1), "text": tok.encode(captions)},
        captions=captions, vocab=vocab, name=f"shapes-captions/hand/{split}",
    )  # fmt: skip


def test_zero_shot_on_a_hand_built_case():
    # prompts: a blue square, a green star, a red circle, a red square (the concepts of R and U)
    u_rows = [
        ("a red circle left of a blue square", ["circle"]),  # red circle 1 beats green star 0, red square 0
        ("a red circle above a green star", ["red", "square"]),  # red circle 1 loses to red square 2
    ]
    r_rows = [
        ("a green star above a blue square", ["star"]),  # green star recognised, blue square (0 vs 0) not
        ("a red square left of a green star", ["blue"]),  # both lose to blue square
        ("a red circle left of a red square", ["red"]),  # names the concept: not a retained image
    ]
    t_rows = [
        ("a blue square above a red square", ["blue", "square", "red"]),  # 2, 2 vs red circle 1: both
        ("a yellow cross left of a blue square", ["square"]),  # blue square 1 ties red square 1: missed
        ("a red circle left of a green star", ["green", "star"]),  # the concept: 0 vs 0, not recognised
    ]
    vocab = WordTokenizer.build([c for c, _ in u_rows + r_rows + t_rows], 0).vocab
    u, r, t = (_hand_built(s, rows, vocab) for s, rows in (("u", u_rows), ("r", r_rows), ("t", t_rows)))
    model = BagOfWords(len(vocab))
    d = ScenarioCData(u, r, t, concept="Red  Circle")
    got = {(x.name, x.split): (x.value, x.chance) for x in zero_shot(model, d)}
    assert got == {
        ("zs_concept", "unlearn"): (0.5, pytest.approx(1 / 3)),
        ("zs_concept", "test_concept"): (0.0, pytest.approx(1 / 3)),
        ("zs_retained", "retain"): (0.25, pytest.approx(1 / 3)),
        ("zs_retained", "test"): (0.5, pytest.approx((1 / 3 + 1 / 4) / 2)),
    }
    assert zero_shot(model, ScenarioCData(u, r, t)) == []  # no concept: no zero-shot figures


# -- validity -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_and_retrained():
    train, val, test = make_pairs(80, 0), make_pairs(32, 1, "val"), make_pairs(32, 2, "test")
    d = ScenarioCData(train.take(torch.arange(24)), train.take(torch.arange(24, 80)), test, val)
    config = TrainConfig(epochs=30, batch_size=32, progress=False)
    init = tiny_dual_encoder(train, 0)
    full = train_model(copy.deepcopy(init), train, config).model  # saw U
    retrain = train_model(copy.deepcopy(init), d.retain, config).model  # never saw U
    fast = RelearnConfig(steps=2)
    return d, scenario_c_metrics(full, init, d, fast), scenario_c_metrics(retrain, init, d, fast)


def test_a_model_that_saw_u_is_told_from_retrain(trained_and_retrained):
    _, full_results, retrain_results = trained_and_retrained
    full, retrain = values(full_results), values(retrain_results)
    u = "unlearn"
    assert full[("mean_recall", u)] > retrain[("mean_recall", u)] + 0.2
    assert full[("pair_sim_mean", u)] > retrain[("pair_sim_mean", u)] + 0.1
    assert full[("mia_loss_auc", u)] > retrain[("mia_loss_auc", u)] + 0.2
    assert full[("mia_svc", u)] < retrain[("mia_svc", u)]  # retrain's U looks like non-members
    assert full[("pair_sim_ks", u)] > retrain[("pair_sim_ks", u)]
    # both learned the task: retain and test recalls well above chance (1/6 for the mean)
    for split in ("retain", "test"):
        assert min(full[("mean_recall", split)], retrain[("mean_recall", split)]) > 0.25
    assert gap_to_retrain(full_results, retrain_results, HEADLINE_C) > 0.1
