"""ReGUn and CoUn: every loss term and reference against a naive per-sample loop on tiny random models.

The registry-wide contract (changes the model, leaves the input untouched, forgets toward retrain) is
checked by tests/unlearn/test_conformance.py and test_dual_encoder_methods.py once both modules are
imported; this file imports them itself.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close

import mmunlearn.unlearn.regun  # noqa: F401  (registers "regun")
from mmunlearn.data import ForgetRequest
from mmunlearn.errors import ConfigError, DataError
from mmunlearn.models import build_model
from mmunlearn.models.protocols import Classifier, DualEncoderModel
from mmunlearn.unlearn import UNLEARNERS, Run, Step, UnlearnData, present_only
from mmunlearn.unlearn.coun import augment, cross_view_nce, translate  # importing registers "coun"
from toy import make_av, make_pairs, tiny_dual_encoder

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


# -- naive references -------------------------------------------------------------------------------------------


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    z = [math.exp(x / temperature) for x in row]
    return [x / sum(z) for x in z]


def kl(q: list[float], p: list[float]) -> float:
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(q, p, strict=True) if a > 0)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def one(data, i: int) -> dict:
    return data.batch(torch.tensor([i]))


def naive_outputs(model, data, modalities) -> tuple[list[list[float]], list[list[float]]]:
    """Forget-view logits and concatenated forgotten-modality features, one sample at a time."""
    logits, feats = [], []
    with torch.no_grad():
        for i in range(len(data)):
            b = present_only(one(data, i), modalities)
            f = model.features(b)
            logits.append(model.logits_from_features(f)[0].tolist())
            feats.append(torch.cat([f[m][0] for m in sorted(modalities)]).tolist())
    return logits, feats


# -- classifier fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def av():
    train, val = make_av(24), make_av(12, seed=4, name="val")
    req = ForgetRequest.random_fraction(train, 0.25, seed=0)
    model = build_model("multimodal-classifier", 0, **CFG).eval()
    original = build_model("multimodal-classifier", 1, **CFG).eval()  # another model: targets must come from it
    return UnlearnData.from_request(req, train, val), model, original


def classifier_run(name: str, data: UnlearnData, model, original, **config) -> tuple:
    method = UNLEARNERS.create(name, progress=False, **config)
    run = Run(data, original, None, Classifier)
    run.state = method.prepare(model, run)
    return method, run


# -- ReGUn ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["nearest", "class", "uniform"])
def test_regun_classifier_references_match_naive(av, reference):
    data, model, original = av
    _, run = classifier_run("regun", data, model, original, reference=reference, temperature=2.0)
    v_logits, v_feats = naive_outputs(original, data.validation, data.modalities)
    _, u_feats = naive_outputs(original, data.unlearn, data.modalities)
    v_probs = [softmax(row, 2.0) for row in v_logits]
    v_labels, u_labels = data.validation.labels.tolist(), data.unlearn.labels.tolist()
    expected = []
    for i in range(len(data.unlearn)):
        if reference == "nearest":
            sims = [cosine(u_feats[i], f) for f in v_feats]
            chosen = [sims.index(max(sims))]
        elif reference == "class":
            chosen = [j for j, y in enumerate(v_labels) if y == u_labels[i]]
        else:
            chosen = list(range(len(v_probs)))
        expected.append([sum(v_probs[j][c] for j in chosen) / len(chosen) for c in range(4)])
    assert_close(run.state.targets, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert run.state.diagonal is None


@pytest.mark.parametrize("shared", [False, True])
def test_regun_classifier_loss_matches_naive(av, shared):
    data, model, original = av
    method, run = classifier_run(
        "regun", data, model, original, temperature=2.0, retain_weight=0.3, batch_shared=shared
    )
    u, r = data.unlearn.batch(torch.arange(4)), data.gold_standard.batch(torch.arange(10))
    torch.manual_seed(5)
    got = method.loss(model, run, Step(u, r, 0))
    targets = [run.state.targets[int(i)].tolist() for i in u["index"]]
    if shared:
        targets = [[sum(t[c] for t in targets) / len(targets) for c in range(4)]] * len(targets)
    forget = 0.0
    with torch.no_grad():
        for k, i in enumerate(u["index"].tolist()):
            logits = model(present_only(one(data.unlearn, i), data.modalities))[0].tolist()
            forget += kl(targets[k], softmax(logits, 2.0))
        torch.manual_seed(5)
        retain = float(model.loss(r))
    expected = 0.7 * forget / len(targets) + 0.3 * retain
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_regun_refuses_without_validation_data(av):
    data, model, _ = av
    for missing in (None, data.validation.take(torch.tensor([], dtype=torch.long))):
        with pytest.raises(DataError, match="regun needs held-out reference data"):
            UNLEARNERS.create("regun", progress=False).unlearn(model, dataclasses.replace(data, validation=missing))


def test_regun_config_checks():
    with pytest.raises(ConfigError, match="reference must be one of"):
        UNLEARNERS.create("regun", reference="random")
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        UNLEARNERS.create("regun", temperature=0.0)
    with pytest.raises(ConfigError, match="retain_weight must be in"):
        UNLEARNERS.create("regun", retain_weight=1.5)


# -- ReGUn on a dual encoder ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs():
    train, val = make_pairs(16, seed=0), make_pairs(8, seed=4, split="val")
    req = ForgetRequest.random_fraction(train, 0.25, seed=0, modalities=("image", "text"))
    model, original = tiny_dual_encoder(train, 0).eval(), tiny_dual_encoder(train, 1).eval()
    return UnlearnData.from_request(req, train, val), model, original


def naive_pair_embeddings(model, data) -> tuple[list[list[float]], list[list[float]]]:
    with torch.no_grad():
        v = [model.encode_image(one(data, i)["image"])[0].tolist() for i in range(len(data))]
        t = [model.encode_text(one(data, i)["text"])[0].tolist() for i in range(len(data))]
    return v, t


def dual_run(data, model, original, **config) -> tuple:
    method = UNLEARNERS.create("regun", progress=False, **config)
    run = Run(data, original, None, DualEncoderModel)
    run.state = method.prepare(model, run)
    return method, run


@pytest.mark.parametrize("reference", ["nearest", "uniform"])
def test_regun_pair_references_match_naive(pairs, reference):
    data, model, original = pairs
    _, run = dual_run(data, model, original, reference=reference)
    scale = float(original.logit_scale().detach())
    vv, vt = naive_pair_embeddings(original, data.validation)
    uv, ut = naive_pair_embeddings(original, data.unlearn)
    val_logits = [scale * sum(a * b for a, b in zip(vv[j], vt[j], strict=True)) for j in range(len(vv))]
    expected = []
    for i in range(len(uv)):
        if reference == "nearest":
            sims = [cosine(uv[i] + ut[i], vv[j] + vt[j]) for j in range(len(vv))]
            expected.append(val_logits[sims.index(max(sims))])
        else:
            expected.append(sum(val_logits) / len(val_logits))
    assert_close(run.state.diagonal, torch.tensor(expected), rtol=1e-5, atol=1e-5)
    assert run.state.targets is None


def test_regun_pair_loss_matches_naive(pairs):
    data, model, original = pairs
    method, run = dual_run(data, model, original, temperature=0.5, retain_weight=0.25)
    u, r = data.unlearn.batch(torch.arange(4)), data.gold_standard.batch(torch.arange(6))
    got = method.loss(model, run, Step(u, r, 0))
    idx = u["index"].tolist()
    s0, s = original.logit_scale().item(), model.logit_scale().item()
    ov, ot = naive_pair_embeddings(original, data.unlearn)
    mv, mt = naive_pair_embeddings(model, data.unlearn)
    dots = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    forget, rows = 0.0, 0
    for anchors0, keys0, anchors, keys in ((ov, ot, mv, mt), (ot, ov, mt, mv)):
        for i in idx:
            target = [s0 * dots(anchors0[i], keys0[j]) for j in idx]
            target[idx.index(i)] = float(run.state.diagonal[i])  # the held-out true-pair logit
            current = [s * dots(anchors[i], keys[j]) for j in idx]
            forget += kl(softmax(target, 0.5), softmax(current, 0.5))
            rows += 1
    with torch.no_grad():
        retain = float(model.loss(r))
    expected = 0.75 * forget / rows + 0.25 * retain
    assert float(got.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_regun_class_reference_needs_labels_on_pairs(pairs):
    data, model, _ = pairs
    with pytest.raises(ConfigError, match="reference='class' needs class labels"):
        UNLEARNERS.create("regun", reference="class", epochs=1, progress=False).unlearn(model, data)


# -- CoUn -------------------------------------------------------------------------------------------------------


def naive_cross_view(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    a, b = z1.tolist(), z2.tolist()
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(len(x)):
            logits = [cosine(x[i], y[j]) / tau for j in range(len(y))]
            total += -math.log(softmax(logits)[i]) / len(x)
    return total


def test_cross_view_nce_matches_naive():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert float(cross_view_nce(z1, z2, 0.3)) == pytest.approx(naive_cross_view(z1, z2, 0.3), rel=1e-10)
    # identical, well-separated views: both directions near zero loss
    eye = torch.eye(4, dtype=torch.float64)
    assert float(cross_view_nce(eye, eye, 0.01)) < 1e-6


def test_translate_matches_naive():
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    offsets = torch.tensor([[1, -2], [-3, 0]])
    got = translate(x, offsets, 2)
    for b in range(2):
        dy, dx = offsets[b].tolist()
        for i in range(4):
            for j in range(5):
                si, sj = i - dy, j - dx
                want = float(x[b, 0, si, sj]) if 0 <= si < 4 and 0 <= sj < 5 else 0.0
                assert float(got[b, 0, i, j]) == want
    spec = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    assert translate(spec, torch.tensor([[2]]), 1).tolist() == [[[0, 0, 0, 1], [0, 0, 4, 5], [0, 0, 8, 9]]]


def test_augment_is_seeded_bounded_and_leaves_ids_alone():
    x = torch.rand(6, 1, 16, 16)
    torch.manual_seed(1)
    a = augment(x, 0.125, True)
    torch.manual_seed(1)
    assert torch.equal(a, augment(x, 0.125, True))
    assert torch.equal(augment(x, 0.0, False), x)
    ids = torch.randint(0, 9, (6, 7))
    assert augment(ids, 0.5, True) is ids
    # a one-pixel image moves at most 2 (= 0.125 x 16) pixels along each axis
    dot = torch.zeros(50, 1, 16, 16)
    dot[:, 0, 8, 8] = 1
    moved = augment(dot, 0.125, False)
    where = moved.flatten(1).argmax(1)
    rows, cols = where // 16, where % 16
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2 and (where != 8 * 16 + 8).any()


def test_coun_classifier_loss_matches_its_terms(av):
    data, model, _ = av
    method, run = classifier_run("coun", data, model, None, cl_weight=0.7, temperature=0.2)
    r = data.gold_standard.batch(torch.arange(12))
    torch.manual_seed(3)
    got = method.loss(model, run, Step(None, r, 0))
    torch.manual_seed(3)
    first, second = method.views(r, model.modalities)
    with torch.no_grad():
        task = float(model.loss_from_features(first, {m: model.embed(first, m) for m in model.modalities}))
        has = r["present_image"]
        z1, z2 = model.embed(first, "image")[has], model.embed(second, "image")[has]
    assert int(has.sum()) > 1 and not torch.equal(first["image"], second["image"])
    expected = task + 0.7 * naive_cross_view(z1, z2, 0.2)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)


def test_coun_never_reads_the_data_to_forget(av):
    """U's inputs replaced by other values give the same weights: CoUn trains on the retain data alone."""
    data, model, _ = av
    u = data.unlearn
    poisoned = u.with_inputs(**{m: 100 * torch.randn_like(t) for m, t in u.inputs.items()})
    config = {"epochs": 1, "retain_batch_size": 8, "progress": False}
    runs = [UNLEARNERS.create("coun", **config).unlearn(model, d) for d in (data, dataclasses.replace(data, unlearn=poisoned))]  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True))  # fmt: skip


def test_coun_pair_loss_matches_its_terms(pairs):
    data, model, _ = pairs
    method = UNLEARNERS.create("coun", cl_weight=2.0, temperature=0.25, progress=False)
    run = Run(data, None, None, DualEncoderModel)
    r = data.gold_standard.batch(torch.arange(8))
    torch.manual_seed(2)
    got = method.loss(model, run, Step(None, r, 0))
    torch.manual_seed(2)
    first, second = method.views(r, ("image",))
    with torch.no_grad():
        task = float(model.loss(first))
        z1, z2 = model.encode_image(first["image"]), model.encode_image(second["image"])
    assert torch.equal(first["text"], r["text"])
    assert float(got.detach()) == pytest.approx(task + 2.0 * naive_cross_view(z1, z2, 0.25), rel=1e-5)


def test_coun_config_checks():
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        UNLEARNERS.create("coun", temperature=-1.0)
    with pytest.raises(ConfigError, match="cl_weight must be >= 0"):
        UNLEARNERS.create("coun", cl_weight=-0.1)
    with pytest.raises(ConfigError, match="shift must be in"):
        UNLEARNERS.create("coun", shift=1.0)


@pytest.mark.parametrize("name", ["regun", "coun"])
def test_a_seed_fixes_the_result(av, name):
    data, model, _ = av
    config = {"epochs": 1, "batch_size": 4, "retain_batch_size": 8, "progress": False}
    a, b, c = (UNLEARNERS.create(name, **config, seed=s).unlearn(model, data) for s in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
