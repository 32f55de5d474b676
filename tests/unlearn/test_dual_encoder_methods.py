"""Every unlearner that can edit a dual encoder honours the contract and forgets, on toy caption pairs;
the loss terms of CLIPErase, MultiDelete and CCU's dual-encoder form match naive loops.

The toy is built so that forgetting is measurable: the captions of the pairs to forget are swapped for
captions of other scenes, so only memorisation links them. The original (trained to memorise them) gives
them a high true-pair cosine and recalls all of them; a model retrained without them gives them the
cosine of an unrelated pair. The validation split is made the same way (scenes with other scenes'
captions): it is held-out data of the kind of the forgotten pairs, so a method that forgets "to the level
of unseen data" (CCU's calibration, CLIPErase's floor) has the right level to stop at. A method that
returns the model unchanged, or moves it away from retrain, fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mmunlearn.data import ForgetRequest
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import ConfigError
from mmunlearn.metrics.outputs import pair_embeddings
from mmunlearn.models import build_model
from mmunlearn.models.dual_encoder import clip_loss
from mmunlearn.models.protocols import DualEncoderModel
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, Run, Step, UnlearnData, Unlearner, retrain_config
from mmunlearn.unlearn.ccu import calibration_targets
from mmunlearn.unlearn.ccu_pairs import (
    complete_pairs,
    info_nce,
    pair_calibration_weights,
    pair_excess,
    pair_inverse_contrastive,
    retrieval_kl,
    true_pair_cosines,
)
from mmunlearn.unlearn.cliperase import CLIPEraseState, forgetting_module
from mmunlearn.unlearn.multidelete import decoupling_loss, unimodal_retention
from toy import make_av, make_pairs, tiny_dual_encoder

DUAL = [n for n in UNLEARNERS.names() if DualEncoderModel in UNLEARNERS.get(n).requires]
RECIPE = TrainConfig(epochs=30, batch_size=16, lr=3e-3, progress=False)
# One test setting for every method: enough steps on 16 pairs that each one acts.
TEST_CONFIG = {"epochs": 3, "lr": 3e-3, "batch_size": 8, "progress": False}


def swapped(data: MultimodalDataset, positions: torch.Tensor, donor: MultimodalDataset) -> MultimodalDataset:
    """``data`` with the captions at ``positions`` replaced by the donor's first captions (other scenes)."""
    text, captions = data.inputs["text"].clone(), list(data.captions or [])
    for k, i in enumerate(positions.tolist()):
        text[i], captions[i] = donor.inputs["text"][k], (donor.captions or [])[k]
    inputs = {"image": data.inputs["image"], "text": text}
    return MultimodalDataset(list(data.ids), inputs, captions=captions, vocab=data.vocab, name=data.name)


def memorisable(n: int = 64) -> tuple[MultimodalDataset, ForgetRequest, MultimodalDataset]:
    """(training set, request, validation split): the request's pairs and the validation pairs are scenes
    with the captions of other scenes."""
    train = make_pairs(n, seed=0)
    req = ForgetRequest.random_fraction(train, 0.25, seed=0, modalities=("image", "text"))
    train = swapped(train, train.positions(req.ids), make_pairs(n, seed=1, split="donor"))
    val = make_pairs(32, seed=4, split="val")
    return train, req, swapped(val, torch.arange(len(val)), make_pairs(32, seed=5, split="donor"))


def config_for(name: str) -> dict:
    if name == "retrain":
        return {**retrain_config(RECIPE), "progress": False}
    fields = {f.name for f in dataclasses.fields(UNLEARNERS.get(name).Config)}
    return {**TEST_CONFIG, "pairs_lr": TEST_CONFIG["lr"], "pairs_epochs": None} if "pairs_lr" in fields else TEST_CONFIG


def pair_cosine(model, data) -> float:
    """Mean true-pair cosine of a set's pairs."""
    return float(true_pair_cosines(model, data).mean())


def recall_at_1(model, data) -> float:
    v, t = pair_embeddings(model, data)
    return float(((v @ t.T).argmax(1) == torch.arange(len(v))).float().mean())


@pytest.fixture(scope="module")
def setup():
    train, req, val = memorisable()
    model = train_model(tiny_dual_encoder(train, 0), train, RECIPE).model.eval()
    data = UnlearnData.from_request(req, train, val)
    reference = UNLEARNERS.create("retrain", **config_for("retrain")).unlearn(model, data)
    return data, model, reference


def test_the_toy_separates_the_original_from_retrain(setup):
    data, model, reference = setup
    u = data.unlearn
    assert recall_at_1(model, u) >= 0.75 and recall_at_1(reference, u) <= 0.3
    assert pair_cosine(model, u) > pair_cosine(reference, u) + 0.5


def test_the_dual_encoder_methods_include_the_new_ones():
    assert {"ccu", "cliperase", "multidelete", "retrain"} <= set(DUAL)


@pytest.mark.parametrize("name", DUAL)
def test_each_method_runs_deterministically_and_forgets_toward_retrain(setup, name):
    data, model, reference = setup
    before = copy.deepcopy(model.state_dict())
    method = UNLEARNERS.create(name, **config_for(name))
    assert isinstance(method, Unlearner) and method.name == name and method.paper
    new = method.unlearn(model, data)
    assert new is not model and type(new) is type(model) and isinstance(new, DualEncoderModel)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert all(p.requires_grad for p in model.parameters()), "input model was frozen"
    assert not new.training, "the model must come back in the mode it was handed over in (eval)"
    assert all(torch.isfinite(p).all() for p in new.parameters())
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items()), f"{name} left the model unchanged"
    # the same seed gives the same weights (retrain: the fixture's reference is the first run)
    again = reference if name == "retrain" else UNLEARNERS.create(name, **config_for(name)).unlearn(model, data)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), again.state_dict().values(), strict=True))
    u, target = data.unlearn, pair_cosine(reference, data.unlearn)
    assert abs(pair_cosine(new, u) - target) < abs(pair_cosine(model, u) - target), f"{name} did not forget"


def test_dual_encoder_only_methods_refuse_a_classifier():
    cfg = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
    data = make_av(16)
    classifier = build_model("multimodal-classifier", 0, **cfg)
    with pytest.raises(ConfigError, match="unlearner 'cliperase' cannot use MultimodalClassifier"):
        UNLEARNERS.create("cliperase").unlearn(classifier, UnlearnData(data.take(torch.arange(4)), data))


# -- loss terms against naive loops -------------------------------------------------------------------


def unit(n: int, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True))


def naive_kl_rows(p_logits: list[list[float]], q_logits: list[list[float]]) -> float:
    total = 0.0
    for pr, qr in zip(p_logits, q_logits, strict=True):
        p = [math.exp(x) / sum(math.exp(y) for y in pr) for x in pr]
        q = [math.exp(x) / sum(math.exp(y) for y in qr) for x in qr]
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True))
    return total / len(p_logits)


def test_decoupling_loss_matches_naive():
    v, t, v0, t0 = unit(5, seed=1), unit(5, seed=2), unit(5, seed=3), unit(5, seed=4)
    pi = torch.tensor([2, 0, 4, 1, 3])
    n, i2t, t2i = 5, 0.0, 0.0
    for i in range(n):
        for j in range(n):
            i2t += (dot(v[i], t[j]) - dot(v0[i], t0[pi[j]])) ** 2  # image i vs caption j -> caption pi(j)
            t2i += (dot(t[i], v[j]) - dot(t0[i], v0[pi[j]])) ** 2  # caption i vs image j -> image pi(j)
    expected = 0.5 * (i2t / n**2 + t2i / n**2)
    assert_close(decoupling_loss(v @ t.T, v0 @ t0.T, pi), torch.tensor(expected, dtype=torch.float64))


def test_unimodal_retention_matches_naive():
    v, t, v0, t0 = unit(4, seed=1), unit(4, seed=2), unit(4, seed=3), unit(4, seed=4)
    expected = (
        sum(
            sum((a - b) ** 2 for a, b in zip(v[i].tolist(), v0[i].tolist(), strict=True))
            + sum((a - b) ** 2 for a, b in zip(t[i].tolist(), t0[i].tolist(), strict=True))
            for i in range(4)
        )
        / 4
    )
    assert_close(unimodal_retention(v, t, v0, t0), torch.tensor(expected, dtype=torch.float64))


def test_retrieval_kl_matches_naive():
    """CLIPErase's CM (and CCU's (b)): KL(original || model) of the rows of S and of S^T."""
    s0 = 7.0 * unit(6, seed=1) @ unit(6, seed=2).T
    s = 5.0 * unit(6, seed=3) @ unit(6, seed=4).T
    expected = naive_kl_rows(s0.tolist(), s.tolist()) + naive_kl_rows(s0.T.tolist(), s.T.tolist())
    assert_close(retrieval_kl(s0, s), torch.tensor(expected, dtype=torch.float64))
    assert float(retrieval_kl(s, s)) == pytest.approx(0.0, abs=1e-12)


def test_forgetting_module_with_and_without_floor():
    v, t = unit(6, seed=1), unit(6, seed=2)
    cos = [dot(v[i], t[i]) for i in range(6)]
    assert_close(forgetting_module(v, t, None), torch.tensor(sum(cos) / 6, dtype=torch.float64))
    floor = sorted(cos)[3]
    expected = sum(max(c - floor, 0.0) for c in cos) / 6
    assert_close(forgetting_module(v, t, floor), torch.tensor(expected, dtype=torch.float64))


def naive_inverse(v, t, keys_t, keys_v, tau, scale):
    out = []
    for i in range(len(v)):
        per = []
        for anchor, keys in ((v[i], keys_t), (t[i], keys_v)):
            own = dot(v[i], t[i])
            sims = [dot(anchor, k) for k in keys]
            if scale is None:
                w = [1 / len(keys)] * len(keys)
            else:
                z = sum(math.exp(scale * s) for s in sims)
                w = [math.exp(scale * s) / z for s in sims]
            per.append(
                sum(
                    wk * -math.log(math.exp(s / tau) / (math.exp(s / tau) + math.exp(own / tau)))
                    for wk, s in zip(w, sims, strict=True)
                )
            )
        out.append(sum(per) / 2)
    return torch.tensor(out, dtype=torch.float64)  # fmt: skip


@pytest.mark.parametrize("scale", [None, 4.0])
def test_pair_inverse_contrastive_matches_naive(scale):
    v, t, kt, kv = unit(3, seed=1), unit(3, seed=2), unit(7, seed=3), unit(7, seed=4)
    got = pair_inverse_contrastive(v, t, kt, kv, 0.2, scale)
    assert_close(got, naive_inverse(v, t, kt, kv, 0.2, scale))
    assert_close(pair_inverse_contrastive(v, t, kt[:0], kv[:0], 0.2), torch.zeros(3, dtype=torch.float64))


def test_info_nce_is_clips_loss_and_counts_extra_negatives():
    v, t, ev, et = unit(4, seed=1), unit(4, seed=2), unit(3, seed=3), unit(3, seed=4)
    scale = torch.tensor(3.0, dtype=torch.float64)
    assert_close(info_nce(v, t, scale), clip_loss(v, t, scale))
    total = 0.0
    for i in range(4):
        texts, images = [*t, *et], [*v, *ev]
        i2t = [3.0 * dot(v[i], x) for x in texts]
        t2i = [3.0 * dot(t[i], x) for x in images]
        total += -math.log(math.exp(i2t[i]) / sum(math.exp(x) for x in i2t))
        total += -math.log(math.exp(t2i[i]) / sum(math.exp(x) for x in t2i))
    assert_close(info_nce(v, t, scale, et, ev), torch.tensor(total / 8, dtype=torch.float64))


def test_gate_and_complete_pairs():
    cos, targets = torch.tensor([0.9, 0.5, 0.7, 1.0]), torch.tensor([0.8, 0.6, 0.7, 0.6])
    assert_close(pair_excess(cos, targets), torch.tensor([0.1, 0.0, 0.0, 0.4]))
    assert_close(pair_calibration_weights(cos, targets, 0.125), torch.tensor([0.8, 0.0, 0.0, 3.2]))
    batch = {"image": torch.arange(3), "present_image": torch.tensor([True, False, True]),
             "present_text": torch.tensor([True, True, True]), "index": torch.tensor([5, 6, 7])}  # fmt: skip
    kept = complete_pairs(batch)
    assert kept["index"].tolist() == [5, 7] and kept["image"].tolist() == [0, 2]
    full = {**batch, "present_image": torch.ones(3, dtype=torch.bool)}
    assert complete_pairs(full) is full


# -- the methods' state and gates on the toy ------------------------------------------------------------


def one_step(data: UnlearnData) -> Step:
    return Step(data.unlearn.batch(torch.arange(8)), data.gold_standard.batch(torch.arange(16)), 0)


def test_ccu_calibrates_to_validation_quantiles_and_gates_term_a(setup):
    data, model, _ = setup
    method = UNLEARNERS.create("ccu", progress=False)
    run = Run(data, copy.deepcopy(model), None, DualEncoderModel)
    run.state = method.prepare(model, run)
    cosines = true_pair_cosines(model, data.unlearn)
    expected = calibration_targets(cosines, true_pair_cosines(model, data.validation))
    assert_close(run.state.targets, expected)
    assert run.state.excess == pytest.approx(float((cosines - expected).clamp_min(0).mean()))
    method.on_epoch_start(model, run, 1)  # later epochs re-match with the model as it is then (unchanged here)
    assert_close(run.state.targets, expected)
    step = one_step(data)
    without_a = UNLEARNERS.create("ccu", use_a=False).loss(model, run, step)
    run.state.targets = torch.full((len(data.unlearn),), 2.0)  # every pair below its target: (a) is off
    assert_close(method.loss(model, run, step), without_a)
    run.state.targets = torch.full((len(data.unlearn),), -2.0)  # every pair above: (a) acts
    assert float(method.loss(model, run, step).detach()) > float(without_a.detach()) + 1e-3


def test_ccu_scales_a_dual_encoders_learning_rate_by_the_excess(setup):
    """The step size follows how far U still is above held-out pairs: the same pairs_lr moves the model
    far less when U is already at the validation level (validation = U itself)."""
    data, model, _ = setup
    config = {"pairs_epochs": 1, "batch_size": 8, "pairs_lr": 1e-2, "use_a": False, "progress": False}
    at_level = dataclasses.replace(data, validation=data.unlearn)
    runs = [UNLEARNERS.create("ccu", **config).unlearn(model, d) for d in (data, at_level)]
    moved = [max(float((a - b).detach().abs().max()) for a, b in zip(r.parameters(), model.parameters(), strict=True)) for r in runs]  # fmt: skip
    assert moved[1] < moved[0] / 10


def test_cliperase_floor_is_the_validation_mean_under_the_current_model(setup):
    data, model, _ = setup
    run = Run(data, copy.deepcopy(model), CLIPEraseState(), DualEncoderModel)
    UNLEARNERS.create("cliperase").on_epoch_start(model, run, 0)
    assert run.state.floor is not None
    assert float(run.state.floor) == pytest.approx(pair_cosine(model, data.validation), abs=1e-6)
    floorless = Run(data, None, CLIPEraseState(), DualEncoderModel)
    UNLEARNERS.create("cliperase", floor=False).on_epoch_start(model, floorless, 0)
    assert floorless.state.floor is None


def test_multidelete_dual_encoder_loss_matches_its_terms(setup):
    data, model, _ = setup
    method = UNLEARNERS.create("multidelete", alpha=0.5, beta=2.0, gamma=0.25)
    original = tiny_dual_encoder(data.unlearn, seed=1).eval()  # another model, so that no term vanishes
    step = one_step(data)
    torch.manual_seed(3)
    got = method.loss(model, Run(data, original, None, DualEncoderModel), step)
    torch.manual_seed(3)
    pi = torch.randperm(8)
    u, r = step.unlearn, step.retain
    with torch.no_grad():
        vu, tu = model.encode_image(u["image"]), model.encode_text(u["text"])
        vr, tr = model.encode_image(r["image"]), model.encode_text(r["text"])
        ou, otu = original.encode_image(u["image"]), original.encode_text(u["text"])
        o_vr, o_tr = original.encode_image(r["image"]), original.encode_text(r["text"])
    n = len(vr)
    mkr = sum((dot(vr[i], tr[j]) - dot(o_vr[i], o_tr[j])) ** 2 for i in range(n) for j in range(n)) / n**2
    expected = 0.5 * decoupling_loss(vu @ tu.T, ou @ otu.T, pi) + 2.0 * mkr
    expected = expected + 0.25 * unimodal_retention(vr, tr, o_vr, o_tr)
    assert_close(got.detach(), expected, rtol=1e-5, atol=1e-6)


def test_ccu_runs_a_dual_encoder_at_pairs_lr_and_keeps_its_config(setup):
    data, model, _ = setup
    method = UNLEARNERS.create("ccu", lr=10.0, pairs_lr=1e-4, pairs_epochs=1, batch_size=8, progress=False)
    new = method.unlearn(model, data)
    assert method.config.lr == 10.0 and method.config.pairs_lr == 1e-4
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(new.parameters(), model.parameters(), strict=True))
    assert 0 < moved < 0.01  # Adam steps of 1e-4, not of 10
