"""The training-free methods (ssd, subspace_edit, task_vector): every formula against a naive reference,
no optimizer step where none is allowed, and a run on a tiny classifier and a tiny dual encoder."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import mmunlearn.unlearn.ssd
import mmunlearn.unlearn.subspace_edit
import mmunlearn.unlearn.task_vector  # noqa: F401
from mmunlearn.data import ForgetRequest
from mmunlearn.data.concepts import caption_concepts
from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.models.protocols import Classifier, DualEncoderModel
from mmunlearn.unlearn import UNLEARNERS, Run, UnlearnData
from mmunlearn.unlearn.ssd import dampening_factors, diagonal_fisher
from mmunlearn.unlearn.subspace_edit import (
    alignment,
    classifier_head,
    concept_direction,
    head_metric,
    projector,
    removed_left,
    removed_right,
    specific_directions,
)
from mmunlearn.unlearn.task_vector import fine_tune, negated, task_vector
from toy import make_av, make_pairs, tiny_dual_encoder

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = {"epochs": 1, "lr": 3e-3, "batch_size": 8, "progress": False}
METHODS = ["ssd", "subspace_edit", "task_vector"]


def classifier_setup(modalities: tuple[str, ...] = ("image",)) -> tuple[nn.Module, UnlearnData]:
    data = make_av(48)
    req = ForgetRequest.random_fraction(data, 0.25, seed=0, modalities=modalities)
    return build_model("multimodal-classifier", 0, **CFG).eval(), UnlearnData.from_request(req, data, make_av(16, 3))


def dual_setup(concept: bool = False) -> tuple[nn.Module, UnlearnData]:
    train = make_pairs(32, seed=0)
    req = ForgetRequest.random_fraction(train, 0.25, seed=0, modalities=("image", "text"))
    data = UnlearnData.from_request(req, train, make_pairs(16, seed=4, split="val"))
    if concept:
        import dataclasses

        data = dataclasses.replace(data, concept=caption_concepts(data.unlearn)[0][0])
    return tiny_dual_encoder(train, 0).eval(), data


# -- SSD --------------------------------------------------------------------------------------------------


def test_diagonal_fisher_is_the_mean_of_squared_batch_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    batches = [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(3)]
    got = diagonal_fisher(model, [lambda b=b: F.cross_entropy(model(b[0]), b[1]) for b in batches])
    for name, p in model.named_parameters():
        naive = torch.zeros_like(p)
        for b in batches:  # one parameter at a time, one batch at a time
            (g,) = torch.autograd.grad(F.cross_entropy(model(b[0]), b[1]), p)
            naive += g**2
        assert_close(got[name], naive / 3)
        per_sample = sum(
            torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), p)[0] ** 2
            for x, y in batches
            for i in range(5)
        )
        assert not torch.allclose(got[name], per_sample / 15)  # per batch, not per sample
    assert all(p.grad is None for p in model.parameters())


def test_dampening_rule_matches_an_elementwise_loop():
    forget = torch.tensor([5.0, 1.0, 0.0, 3.0, 20.0, 2.0, 1e-3])
    full = torch.tensor([0.1, 0.5, 0.0, 0.0, 1.0, 0.3, 0.0])
    for alpha, lam in ((10.0, 1.0), (2.0, 0.5), (1.0, 30.0)):
        expected = []
        for f, d in zip(forget.tolist(), full.tolist(), strict=True):
            expected.append(min(lam * d / f, 1.0) if f > alpha * d else 1.0)
        assert_close(dampening_factors(forget, full, alpha, lam), torch.tensor(expected))


def test_ssd_dampens_only_the_selected_elements_and_skips_scalars():
    model = nn.Linear(2, 2)
    model.register_parameter("temp", nn.Parameter(torch.tensor(2.0)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    f_forget = {
        "weight": torch.tensor([[4.0, 1.0], [0.0, 2.0]]),
        "bias": torch.tensor([1.0, 1.0]),
        "temp": torch.tensor(9.0),
    }
    f_full = {"weight": torch.tensor([[0.2, 1.0], [0.0, 0.1]]), "bias": torch.tensor([1.0, 0.01]), "temp": torch.tensor(0.0)}  # fmt: skip
    method = UNLEARNERS.create("ssd", alpha=10.0, lam=1.0)
    changed, total = method.dampen(model, f_forget, f_full)
    assert (changed, total) == (3, 7)
    assert_close(model.weight.detach(), before["weight"] * torch.tensor([[0.05, 1.0], [1.0, 0.05]]))
    assert_close(model.bias.detach(), before["bias"] * torch.tensor([1.0, 0.01]))
    assert torch.equal(model.temp.detach(), before["temp"])


def test_ssd_config_checks():
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        UNLEARNERS.create("ssd", alpha=0.0)
    with pytest.raises(ConfigError, match="max_batches"):
        UNLEARNERS.create("ssd", max_batches=0)


# -- subspace edit ----------------------------------------------------------------------------------------


def test_alignment_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    naive = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(6):
        for a in range(3):
            for b in range(3):
                naive[a, b] += (x[i, a] * y[i, b] + y[i, a] * x[i, b]) / 12
    assert_close(alignment(x, y), naive)


def test_specific_directions_and_the_projector():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    matrix = a + a.T
    basis = specific_directions(matrix)
    assert_close(basis.T @ basis, torch.eye(6, dtype=torch.float64))
    rayleigh = [float(basis[:, i] @ matrix @ basis[:, i]) for i in range(6)]
    assert rayleigh == sorted(rayleigh, reverse=True)
    assert rayleigh[0] == pytest.approx(float(torch.linalg.eigvalsh(matrix).max()))
    fixed = torch.randn(6, 1, generator=g, dtype=torch.float64)
    with_fixed = specific_directions(matrix, fixed)
    assert_close(with_fixed.T @ with_fixed, torch.eye(6, dtype=torch.float64))
    assert abs(float(F.cosine_similarity(with_fixed[:, 0], fixed[:, 0], dim=0))) == pytest.approx(1.0)
    for k in (1, 3):
        p = projector(with_fixed[:, :k])
        keep = torch.eye(6, dtype=torch.float64) - p
        assert_close(p @ p, p)  # idempotent
        assert_close(p @ keep, torch.zeros(6, 6, dtype=torch.float64))  # orthogonal to what it keeps
        w = torch.randn(4, 6, generator=g, dtype=torch.float64)
        assert_close(removed_right(w, p) @ with_fixed[:, :k], torch.zeros(4, k, dtype=torch.float64))
        assert_close(p @ removed_left(w.T, p), torch.zeros(6, 4, dtype=torch.float64))
        assert_close(removed_right(w, p) @ with_fixed[:, k:], w @ with_fixed[:, k:])  # the rest untouched


def test_head_metric_gives_the_logit_norm():
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = torch.randn(6, dtype=torch.float64)
    assert float((head_metric(w) @ f).norm()) == pytest.approx(float((w @ f).norm()))


def test_classifier_head_is_found_and_the_edit_silences_the_removed_directions():
    model, data = classifier_setup()
    batch = data.unlearn.batch(torch.arange(4))
    head, blocks = classifier_head(model, batch)
    assert head is model.head and blocks == {"image": slice(0, 8), "audio": slice(8, 16)}
    method = UNLEARNERS.create("subspace_edit", progress=False)
    run = Run(data, None, None, Classifier)
    (edit,) = method.classifier_edits(model, run)
    edit.apply(2)
    q = edit.basis[:, :2].T.float()
    with torch.no_grad():
        assert_close(model.logits_from_features({"image": q}), model.head.bias.expand(2, -1))
    with pytest.raises(ConfigError, match=r"one nn\.Linear over the concatenated"):
        classifier_head(_NoLinearHead(), batch)


class _NoLinearHead(nn.Module):
    modalities = ("image",)

    def embed(self, batch, modality):
        return batch["image"].flatten(1)[:, :3]

    def logits_from_features(self, feats):
        return feats["image"] ** 2


def test_dual_encoder_edit_removes_the_concept_direction_from_image_embeddings():
    model, data = dual_setup(concept=True)
    method = UNLEARNERS.create("subspace_edit", **FAST)
    new = method.unlearn(model, data)
    c = concept_direction(model, Run(data, None, None, DualEncoderModel))
    assert c is not None
    with torch.no_grad():
        v = new.encode_image(data.unlearn.inputs["image"][:8]).double()
    assert_close(v @ c, torch.zeros(8, 1, dtype=torch.float64), atol=1e-5, rtol=0)
    changed = {k for k, v in new.state_dict().items() if not torch.equal(v, model.state_dict()[k])}
    assert changed <= {"image_encoder.proj.weight", "image_encoder.proj.bias"} and changed


def test_subspace_edit_config_checks():
    with pytest.raises(ConfigError, match="ranks must be increasing"):
        UNLEARNERS.create("subspace_edit", ranks=[4, 2])
    with pytest.raises(ConfigError, match="towers"):
        UNLEARNERS.create("subspace_edit", towers=["audio"])


# -- task vector -------------------------------------------------------------------------------------------


def test_task_vector_arithmetic_is_exact():
    g = torch.Generator().manual_seed(3)
    theta0 = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g), "n": torch.tensor(4)}
    ft = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g), "n": torch.tensor(9)}
    tau = task_vector(theta0, ft)
    assert set(tau) == {"w", "b"}  # integer entries are skipped
    out = negated(theta0, tau, 0.7)
    for k in ("w", "b"):
        for i, (a, f) in enumerate(zip(theta0[k].flatten().tolist(), ft[k].flatten().tolist(), strict=True)):
            assert float(out[k].flatten()[i]) == pytest.approx(a - 0.7 * (f - a), abs=1e-6)
    assert int(out["n"]) == 4


@pytest.mark.parametrize("setup", [classifier_setup, dual_setup])
def test_task_vector_returns_theta0_minus_a_grid_scale_of_the_fine_tuned_difference(setup):
    model, data = setup()
    method = UNLEARNERS.create("task_vector", **FAST)
    new = method.unlearn(model, data)
    kind = method.validate(model, data)
    tuned = fine_tune(copy.deepcopy(model).requires_grad_(True), Run(data, None, None, kind), method.config, _Bar())
    theta0 = model.state_dict()
    tau = task_vector(theta0, tuned.state_dict())
    fits = [s for s in method.config.scales if all(torch.allclose(new.state_dict()[k], v, atol=1e-6) for k, v in negated(theta0, tau, s).items())]  # fmt: skip
    assert len(fits) == 1


class _Bar:
    def update(self, n: int = 1) -> None:
        pass


def test_task_vector_config_checks():
    with pytest.raises(ConfigError, match="scales"):
        UNLEARNERS.create("task_vector", scales=[0.5, 0.1])
    with pytest.raises(ConfigError, match="tolerance"):
        UNLEARNERS.create("task_vector", tolerance=2.0)


# -- every method ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ssd", "subspace_edit"])
def test_no_optimizer_step(monkeypatch, name):
    def refuse(*args, **kwargs):
        raise AssertionError("an optimizer step was taken")

    for opt in (torch.optim.Optimizer, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adam):
        monkeypatch.setattr(opt, "step", refuse)
    for setup in (classifier_setup, dual_setup):
        model, data = setup()
        UNLEARNERS.create(name, **FAST).unlearn(model, data)


def test_subspace_edit_changes_only_the_heads_image_block():
    model, data = classifier_setup()
    new = UNLEARNERS.create("subspace_edit", **FAST).unlearn(model, data)
    changed = {k for k, v in new.state_dict().items() if not torch.equal(v, model.state_dict()[k])}
    assert changed == {"head.weight"}
    assert torch.equal(new.head.weight[:, 8:], model.head.weight[:, 8:])  # the audio block is kept
    assert not torch.equal(new.head.weight[:, :8], model.head.weight[:, :8])


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("setup", [classifier_setup, dual_setup, lambda: classifier_setup(("image", "audio"))])
def test_each_method_runs_changes_the_copy_and_is_deterministic(name, setup):
    model, data = setup()
    before = copy.deepcopy(model.state_dict())
    method = UNLEARNERS.create(name, **FAST)
    assert method.stage == "training-free" and method.paper
    runs = [method.unlearn(model, data) for _ in range(2)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    new = runs[0].state_dict()
    assert any(not torch.equal(before[k], v) for k, v in new.items())
    assert all(torch.equal(v, runs[1].state_dict()[k]) for k, v in new.items())
    assert all(torch.isfinite(p).all() for p in runs[0].parameters()) and not runs[0].training
