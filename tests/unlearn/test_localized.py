"""SLUG and MANU (architecture-constrained unlearning): their scores against naive loops on tiny models, SLUG
edits exactly one layer, MANU zeroes exactly the chosen neurons of the forgotten modality's encoder only."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import mmunlearn.unlearn.manu as manu
import mmunlearn.unlearn.slug as slug
from mmunlearn.data import ForgetRequest
from mmunlearn.errors import ConfigError
from mmunlearn.models import build_model
from mmunlearn.models.protocols import Classifier, DualEncoderModel
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, Run, UnlearnData
from mmunlearn.unlearn.objectives import task_loss
from toy import make_av, make_pairs, tiny_dual_encoder

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
QUICK = {"epochs": 3, "lr": 3e-3, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def av():
    """(trained tiny classifier, UnlearnData of a visual-only request)."""
    train = make_av(48)
    model = train_model(
        build_model("multimodal-classifier", 0, **CFG), train, TrainConfig(epochs=3, batch_size=16, progress=False)
    ).model.eval()
    req = ForgetRequest.random_fraction(train, 0.25, seed=0)
    return model, UnlearnData.from_request(req, train, make_av(16, seed=4, name="val"))


@pytest.fixture(scope="module")
def pairs():
    """(random tiny dual encoder, training pairs)."""
    train = make_pairs(32, seed=0)
    return tiny_dual_encoder(train, 0).eval(), train


def pair_data(train, modalities=("image", "text")) -> UnlearnData:
    req = ForgetRequest.random_fraction(train, 0.25, seed=0, modalities=modalities)
    return UnlearnData.from_request(req, train, make_pairs(16, seed=4, split="val"))


def changed(before: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    return [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]


# -- SLUG: scores against naive loops ----------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2, bias=False)
        self.scale = nn.Parameter(torch.tensor(1.0))  # a scalar: no layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.b(self.norm(self.a(x)))


def test_layers_group_a_modules_own_parameters():
    assert slug.model_layers(Tiny()) == {"a": ["a.weight", "a.bias"], "norm": ["norm.weight", "norm.bias"], "b": ["b.weight"]}  # fmt: skip


def test_importance_and_alignment_match_naive():
    model = Tiny()
    g = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    gf = {n: torch.randn(p.shape, generator=g) for n, p in params.items()}
    gr = {n: torch.randn(p.shape, generator=g) for n, p in params.items()}
    gf["b.weight"] = torch.zeros(2, 4)  # no forget gradient: importance 0, alignment 0
    layers = slug.model_layers(model)
    scores = slug.layer_scores(params, gf, gr, layers)
    for layer, names in layers.items():
        f = [x for n in names for x in gf[n].flatten().tolist()]
        r = [x for n in names for x in gr[n].flatten().tolist()]
        t = [x for n in names for x in params[n].detach().flatten().tolist()]
        nf, nr = math.sqrt(sum(x * x for x in f)), math.sqrt(sum(x * x for x in r))
        assert scores[layer].importance == pytest.approx(nf / math.sqrt(sum(x * x for x in t)), rel=1e-9)
        dot = sum(x * y for x, y in zip(f, r, strict=True))
        assert scores[layer].alignment == pytest.approx(abs(dot) / (nf * nr) if nf else 0.0, rel=1e-9, abs=1e-12)


def test_pareto_front_matches_naive():
    g = torch.Generator().manual_seed(1)
    scores = {f"l{i}": slug.LayerScore(float(a), float(b)) for i, (a, b) in enumerate(torch.rand(40, 2, generator=g))}
    scores["dead"] = slug.LayerScore(0.0, 0.0)
    best = max(scores.values(), key=lambda s: s.importance)
    scores["tie"] = slug.LayerScore(best.importance, best.alignment + 0.5)  # not strictly beaten: on the front
    naive = []
    for k, s in scores.items():
        beaten = False
        for o in scores.values():
            if o.importance > s.importance and o.alignment < s.alignment:
                beaten = True
        if s.importance > 0 and not beaten:
            naive.append(k)
    front = slug.pareto_front(scores)
    assert front == naive and 1 <= len(front) < 40 and "dead" not in front and "tie" in front
    top = max(scores, key=lambda k: scores[k].importance)
    assert top in front and min(scores, key=lambda k: scores[k].alignment) == "dead"


def test_mean_gradient_is_the_mean_of_the_batch_gradients():
    model = Tiny()
    g = torch.Generator().manual_seed(2)
    batches = [{"x": torch.randn(5, 3, generator=g)} for _ in range(3)]

    def loss(b):
        return model(b["x"]).pow(2).mean()

    got = slug.mean_gradient(model, batches, loss)
    for n, p in model.named_parameters():
        each = [torch.autograd.grad(loss(b), p)[0] for b in batches]
        assert_close(got[n], sum(each) / 3)
    assert all(p.grad is None for p in model.parameters())


def test_the_step_ascends_the_forget_loss_by_lambda_times_the_layer_norm(av):
    model, data = av
    model = copy.deepcopy(model).requires_grad_(True)
    run = Run(data, None, None, Classifier)
    batch = data.unlearn.full_batch()
    grads = slug.mean_gradient(model, [batch], lambda b: task_loss(model, run, b))
    names = ["encoders.image.proj.weight", "encoders.image.proj.bias"]
    before = copy.deepcopy(model.state_dict())
    slug.SLUG._apply(model, names, grads, 0.01)
    after = dict(model.named_parameters())
    delta = torch.cat([(after[n].detach() - before[n]).flatten() for n in names])
    theta = torch.cat([before[n].flatten() for n in names])
    assert float(delta.norm()) == pytest.approx(0.01 * float(theta.norm()), rel=1e-4)
    assert changed(before, model) == names
    model.load_state_dict(before)
    with torch.no_grad():
        start = float(task_loss(model, run, batch))
        slug.SLUG._apply(model, names, grads, 1e-3)
        assert float(task_loss(model, run, batch)) > start  # up the forget loss, not down


def test_slug_step_grid_and_config_checks():
    assert slug.step_grid(slug.SLUGConfig(step_start=0.1, step_factor=2.0, step_count=3)) == pytest.approx(
        [0.1, 0.2, 0.4]
    )
    for bad in ({"step_factor": 1.0}, {"criterion": "x"}, {"layer_rule": "x"}, {"grad_batches": 0}):
        with pytest.raises(ConfigError):
            UNLEARNERS.create("slug", **bad)


# -- SLUG: the method ----------------------------------------------------------------------------------------


def one_layer(before: dict[str, torch.Tensor], new: nn.Module) -> str:
    """The one layer whose parameters changed (fails if several did)."""
    names = changed(before, new)
    layers = {layer for layer, own in slug.model_layers(new).items() if set(own) & set(names)}
    assert len(layers) == 1, f"changed: {names}"
    (layer,) = layers
    assert set(names) <= set(slug.model_layers(new)[layer])
    return layer


@pytest.mark.parametrize("rule", ["search", "importance"])
def test_slug_changes_exactly_one_layer_of_a_classifier_and_meets_its_criterion(av, rule):
    model, data = av
    before = copy.deepcopy(model.state_dict())
    new = UNLEARNERS.create("slug", **QUICK, layer_rule=rule).unlearn(model, data)
    layer = one_layer(before, new)
    assert layer.startswith("encoders.image") or layer == "head"  # the forget view reaches nothing else
    run = Run(data, None, None, Classifier)
    batches = [data.unlearn.batch(i) for i in slug.epoch_batches(len(data.unlearn), 8, 0, 0)]
    assert slug.forget_measure(new, run, batches).accuracy <= slug.forget_measure(model, run, batches).accuracy
    again = UNLEARNERS.create("slug", **QUICK, layer_rule=rule).unlearn(model, data)
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), again.state_dict().values(), strict=True))


def test_slug_importance_rule_takes_the_fronts_most_important_layer(av):
    model, data = av
    work = copy.deepcopy(model).requires_grad_(True).eval()
    run = Run(data, None, None, Classifier)
    method = UNLEARNERS.create("slug", **QUICK, layer_rule="importance")
    forget, keep, _ = method._data(work, run)
    gf = slug.mean_gradient(work, forget, lambda b: task_loss(work, run, b))
    gr = slug.mean_gradient(work, keep, work.loss)
    scores = slug.layer_scores(dict(work.named_parameters()), gf, gr, slug.model_layers(work))
    expected = max(slug.pareto_front(scores), key=lambda k: scores[k].importance)
    assert one_layer(copy.deepcopy(model.state_dict()), method.unlearn(model, data)) == expected


def test_slug_validation_criterion_stops_at_the_validation_level(av):
    model, data = av
    method = UNLEARNERS.create("slug", **QUICK, criterion="validation")
    work = copy.deepcopy(model).requires_grad_(True).eval()
    run = Run(data, None, None, Classifier)
    forget, _keep, val = method._data(work, run)
    level = method._level(work, run, val)
    assert level == pytest.approx(slug.forget_measure(work, run, val).loss)
    new = method.unlearn(model, data)
    reached = slug.forget_measure(new.eval(), run, forget).loss
    assert reached >= level or reached > slug.forget_measure(work, run, forget).loss


def test_slug_changes_exactly_one_layer_of_a_dual_encoder(pairs):
    model, train = pairs
    before = copy.deepcopy(model.state_dict())
    new = UNLEARNERS.create("slug", **QUICK).unlearn(model, pair_data(train))
    one_layer(before, new)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- MANU: statistics and scores against naive loops -----------------------------------------------------


def naive_stats(acts: list[list[float]], tau: float) -> dict[str, float]:
    a = [max(-manu.CLAMP, min(manu.CLAMP, x)) for row in acts for x in row]
    n = len(a)
    mean = sum(a) / n
    return {
        "abs": sum(abs(x) for x in a) / n,
        "freq": sum(abs(x) > tau for x in a) / n,
        "var": math.sqrt(sum((x - mean) ** 2 for x in a) / n),
        "rms": math.sqrt(sum(x * x for x in a) / n),
    }


def test_neuron_statistics_match_a_naive_loop():
    torch.manual_seed(0)
    conv, lin = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(5, 4)
    with torch.no_grad():
        lin.bias[0] = 5e3  # clamped
    images, seqs = torch.randn(6, 2, 4, 4), torch.randn(6, 7, 5)  # a sequence: positions are entries too
    batches = [{"i": images[:4], "s": seqs[:4]}, {"i": images[4:], "s": seqs[4:]}]
    modules = {"conv": conv, "lin": lin}
    stats = manu.collect_stats(modules, lambda b: (conv(b["i"]), lin(b["s"]))[0], batches, 0.1)
    assert set(stats) == {"conv", "lin"}
    with torch.no_grad():
        c_out, l_out = conv(images), lin(seqs)
    for ch in range(3):
        acts = [[float(c_out[s, ch, y, x]) for y in range(4) for x in range(4)] for s in range(6)]
        for k, v in naive_stats(acts, 0.1).items():
            assert float(stats["conv"].importances()[k][ch]) == pytest.approx(v, rel=1e-5, abs=1e-7)
    for unit in range(4):
        acts = [[float(l_out[s, p, unit]) for p in range(7)] for s in range(6)]
        for k, v in naive_stats(acts, 0.1).items():
            assert float(stats["lin"].importances()[k][unit]) == pytest.approx(v, rel=1e-5, abs=1e-7)
    assert float(stats["lin"].importances()["abs"][0]) == pytest.approx(manu.CLAMP)


def test_neuron_scores_and_top_neurons_match_naive():
    g = torch.Generator().manual_seed(3)
    f, r = manu.RunningStats.empty(5), manu.RunningStats.empty(5)
    f.add(torch.randn(20, 5, generator=g) * 2, 0.1)
    r.add(torch.randn(30, 5, generator=g), 0.1)
    w = {"abs": 2.0, "freq": 0.5, "var": 2.0, "rms": 1.0}
    fi, ri = f.importances(), r.importances()
    expected = [sum(w[s] * (float(fi[s][j]) / (float(ri[s][j]) + 1e-5) - 1) for s in manu.STATS) for j in range(5)]
    assert_close(manu.neuron_scores(f, r, w), torch.tensor(expected, dtype=torch.float64))
    scores = {"a": torch.rand(10, generator=g), "b": torch.rand(30, generator=g)}
    chosen = manu.top_neurons(scores, 0.1)
    flat = [(float(v), name, i) for name, s in scores.items() for i, v in enumerate(s)]
    naive = sorted(flat, key=lambda t: -t[0])[:4]
    assert sorted((n, i) for _, n, i in naive) == sorted((n, int(i)) for n, idx in chosen.items() for i in idx)
    assert sum(len(v) for v in manu.top_neurons(scores, 1e-6).values()) == 1


def test_prune_zeroes_rows_and_bias_entries_only():
    conv, lin = nn.Conv2d(2, 3, 3), nn.Linear(4, 5)
    before = {n: copy.deepcopy(m.state_dict()) for n, m in (("conv", conv), ("lin", lin))}
    manu.prune({"conv": conv, "lin": lin}, {"conv": torch.tensor([1]), "lin": torch.tensor([0, 3])})
    for name, layer, idx in (("conv", conv, [1]), ("lin", lin, [0, 3])):
        for i in range(layer.weight.shape[0]):
            zero = i in idx
            assert bool((layer.weight[i] == 0).all()) == zero and bool(layer.bias[i] == 0) == zero
            if not zero:
                assert torch.equal(layer.weight[i], before[name]["weight"][i])


def test_modality_modules_are_each_encoders_own_layers(av, pairs):
    model, data = av
    found = manu.modality_modules(model, Classifier, data.unlearn.batch(torch.arange(2)))
    assert set(found) == {"image", "audio"}
    assert found["image"] and all(n.startswith("encoders.image.") for n in found["image"])
    assert found["audio"] and all(n.startswith("encoders.audio.") for n in found["audio"])
    dual, train = pairs
    found = manu.modality_modules(dual, DualEncoderModel, train.batch(torch.arange(2)))
    assert all(n.startswith("image_encoder.") for n in found["image"])
    assert "text_encoder.transformer.layers.0.linear1" in found["text"]  # hooks fire in eval mode too
    assert all(n.startswith("text_encoder.") for n in found["text"])


# -- MANU: the method ----------------------------------------------------------------------------------------


def zeroed_neurons(before: dict[str, torch.Tensor], new: nn.Module) -> dict[str, list[int]]:
    """Layer -> the output rows that changed (each must now be zero, with its bias entry)."""
    out: dict[str, list[int]] = {}
    state = new.state_dict()
    for k in changed(before, new):
        layer, _kind = k.rsplit(".", 1)
        rows = [i for i in range(len(state[k])) if not torch.equal(state[k][i], before[k][i])]
        assert all(bool((state[k][i] == 0).all()) for i in rows)
        out.setdefault(layer, [])
        out[layer] = sorted(set(out[layer]) | set(rows))
    return out


def test_manu_zeroes_exactly_the_chosen_neurons_of_the_forgotten_encoder(av):
    model, data = av
    before = copy.deepcopy(model.state_dict())
    method = UNLEARNERS.create("manu", **QUICK)
    new = method.unlearn(model, data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    work = copy.deepcopy(model).eval()
    run = Run(data, None, None, Classifier)
    forget, keep = method._data(work, run)
    modules = manu.modality_modules(work, Classifier, forget[0])["image"]
    chosen = method.choose(modules, manu.encoder_runners(work, Classifier)["image"], forget, keep, "image")
    assert zeroed_neurons(before, new) == {k: v.tolist() for k, v in chosen.items()}
    total = sum(m.weight.shape[0] for m in modules.values())  # type: ignore[union-attr]
    assert sum(len(v) for v in chosen.values()) == max(1, int(0.05 * total))
    assert all(k.startswith("encoders.image.") for k in changed(before, new))


def test_manu_prunes_every_forgotten_modality_and_only_those(av, pairs):
    model, data = av
    full = UnlearnData.from_request(
        ForgetRequest.random_fraction(data.retain, 0.25, seed=1, modalities=("image", "audio")), data.retain
    )
    before = copy.deepcopy(model.state_dict())
    names = changed(before, UNLEARNERS.create("manu", **QUICK).unlearn(model, full))
    assert {n.split(".")[1] for n in names} == {"image", "audio"}
    dual, train = pairs
    before = copy.deepcopy(dual.state_dict())
    image_only = changed(before, UNLEARNERS.create("manu", **QUICK).unlearn(dual, pair_data(train, ("image",))))
    assert image_only and all(n.startswith("image_encoder.") for n in image_only)
    both = changed(before, UNLEARNERS.create("manu", **QUICK).unlearn(dual, pair_data(train)))
    assert {n.split(".")[0] for n in both} == {"image_encoder", "text_encoder"}


def test_manu_config_checks():
    for bad in ({"prune_ratio": 0.0}, {"prune_ratio": 1.5}, {"max_batches": 0}, {"w_abs": -1.0}):
        with pytest.raises(ConfigError):
            UNLEARNERS.create("manu", **bad)


def test_both_are_architecture_constrained_and_work_on_both_kinds():
    for name in ("slug", "manu"):
        cls = UNLEARNERS.get(name)
        assert cls.stage == "architecture-constrained" and cls.requires == (Classifier, DualEncoderModel)
