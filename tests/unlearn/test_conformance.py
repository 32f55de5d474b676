"""Every registered unlearning method honours the contract, for visual-only and full-deletion requests."""

import copy

import pytest
import torch

from mmunlearn.data import ForgetRequest
from mmunlearn.errors import ConfigError, DataError, DivergenceError
from mmunlearn.metrics.scenario_a import ScenarioAData, gap_to_retrain, scenario_a_metrics
from mmunlearn.train import TrainConfig, build_model, train
from mmunlearn.unlearn import UNLEARNERS, Unlearner
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = {"epochs": 1, "progress": False}


@pytest.fixture(scope="module")
def setup():
    data, val, test = make_av(96), make_av(32, seed=4, name="val"), make_av(32, seed=5, name="test")
    model = train(
        build_model("multimodal-classifier", 0, **CFG), data, TrainConfig(epochs=3, batch_size=16, progress=False)
    ).model
    return data, val, test, model


@pytest.mark.parametrize("modalities", [("image",), ("image", "audio")])
@pytest.mark.parametrize("name", UNLEARNERS.names())
def test_contract(setup, name, modalities):
    data, val, test, model = setup
    before = copy.deepcopy(model.state_dict())
    req = ForgetRequest.random_fraction(data, 0.25, seed=0, modalities=modalities)
    method = UNLEARNERS.create(name, **FAST)
    assert isinstance(method, Unlearner) and method.name == name and method.paper
    new = method.unlearn(
        model, req.unlearn_set(data), req.gold_standard_set(data), original=model, modalities=modalities, validation=val
    )
    assert new is not model and type(new) is type(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert all(p.requires_grad for p in model.parameters()), "input model was frozen"
    assert all(torch.isfinite(p).all() for p in new.parameters())
    metrics = scenario_a_metrics(new, model, ScenarioAData(req.unlearn_set(data), req.retain_set(data), test, val))
    names = {m.name for m in metrics}
    assert {
        "acc_fused",
        "acc_image",
        "acc_audio",
        "mia_svc",
        "mia_loss_auc",
        "retain_cka_image",
        "relearn_acc_image",
    } <= names
    assert gap_to_retrain(metrics, metrics) == 0.0


def test_methods_needing_retain_refuse_without_it(setup):
    data, _, _, model = setup
    u = data.take(torch.arange(8))
    needing = [n for n in UNLEARNERS.names() if UNLEARNERS.get(n).requires_retain]
    assert "finetune" in needing and "ccu" in needing
    for name in needing:
        with pytest.raises(DataError, match=f"{name} needs the retain set"):
            UNLEARNERS.create(name, **FAST).unlearn(model, u, None)
    # methods that do not need it run without it
    UNLEARNERS.create("grad_ascent", **FAST).unlearn(model, u, None)


def test_bad_inputs(setup):
    data, _, _, model = setup
    u = data.take(torch.arange(8))
    with pytest.raises(DataError, match="unlearn set is empty"):
        UNLEARNERS.create("ccu", **FAST).unlearn(model, u.take(torch.tensor([], dtype=torch.long)), data)
    with pytest.raises(DataError, match=r"cannot forget modality \['text'\]"):
        UNLEARNERS.create("ccu", **FAST).unlearn(model, u, data, modalities=["text"])
    with pytest.raises(ConfigError, match="unknown CCUConfig key"):
        UNLEARNERS.create("ccu", lambda_z=1.0)
    with pytest.raises(ConfigError, match="epochs must be >= 0"):
        UNLEARNERS.create("finetune", epochs=-2)


def test_divergence_guard(setup):
    data, _, _, model = setup
    u = data.take(torch.arange(8)).with_inputs(image=torch.full((8, 1, 16, 16), 1e38))
    with pytest.raises(DivergenceError, match="no model is returned"):
        UNLEARNERS.create("grad_ascent", **FAST).unlearn(model, u, None)


def test_seeded_methods_are_deterministic(setup):
    data, val, _, model = setup
    req = ForgetRequest.random_fraction(data, 0.25, seed=0)
    runs = [
        UNLEARNERS.create("ccu", **FAST).unlearn(
            model, req.unlearn_set(data), req.gold_standard_set(data), validation=val
        )
        for _ in range(2)
    ]
    assert all(
        torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True)
    )
