"""Every registered unlearning method honours the contract, and each one forgets, on a tiny set.

The tiny set is built so that forgetting is measurable: the images of the samples to forget show the
pattern of the *next* class, so only memorisation maps them to their label. The original (15 epochs)
recalls about half of them from their image alone; a model retrained without those images recalls
none. A method that returns the model unchanged, or moves it away from retrain, fails here.
"""

import copy

import pytest
import torch

from mmunlearn.data import ForgetRequest
from mmunlearn.errors import ConfigError, DataError, DivergenceError
from mmunlearn.metrics.outputs import classifier_logits
from mmunlearn.models import build_model
from mmunlearn.models.protocols import Classifier
from mmunlearn.pipeline import request_metrics
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData, Unlearner, retrain_config
from toy import make_av

CLASSIFIER_METHODS = [n for n in UNLEARNERS.names() if Classifier in UNLEARNERS.get(n).requires]
CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
RECIPE = TrainConfig(epochs=15, batch_size=16, progress=False)
# One test setting for every method: enough steps on 24 samples that each one acts.
TEST_CONFIG = {"epochs": 3, "lr": 3e-3, "batch_size": 8, "progress": False}


def memorisable(n: int = 96) -> tuple:
    """(training set, request): the request's images show the pattern of the next class."""
    data = make_av(n)
    req = ForgetRequest.random_fraction(data, 0.25, seed=0)
    images, y = data.inputs["image"].clone(), data.labels
    for i in data.positions(req.ids).tolist():
        j = int((y == (y[i] + 1) % 4).nonzero()[0])
        images[i] = data.inputs["image"][j] + 0.05 * torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(i))
    return data.with_inputs(image=images), req


def config_for(name: str) -> dict:
    return {**retrain_config(RECIPE), "progress": False} if name == "retrain" else TEST_CONFIG


def image_accuracy(model, data) -> float:
    return float((classifier_logits(model, data, "image").argmax(1) == data.labels).float().mean())


@pytest.fixture(scope="module")
def setup():
    data, req = memorisable()
    val, test = make_av(32, seed=4, name="val"), make_av(32, seed=5, name="test")
    model = train_model(build_model("multimodal-classifier", 0, **CFG), data, RECIPE).model.eval()
    unlearn_data = UnlearnData.from_request(req, data, val)
    reference = UNLEARNERS.create("retrain", **config_for("retrain")).unlearn(model, unlearn_data)
    return data, req, val, test, model, reference


def test_the_tiny_set_separates_the_original_from_retrain(setup):
    data, req, val, _, model, reference = setup
    u = UnlearnData.from_request(req, data, val).unlearn
    assert image_accuracy(model, u) >= 0.4 and image_accuracy(reference, u) <= 0.05


@pytest.mark.parametrize("name", CLASSIFIER_METHODS)
def test_each_method_changes_the_model_and_forgets_toward_retrain(setup, name):
    data, req, val, test, model, reference = setup
    before = copy.deepcopy(model.state_dict())
    method = UNLEARNERS.create(name, **config_for(name))
    assert isinstance(method, Unlearner) and method.name == name and method.paper
    unlearn_data = UnlearnData.from_request(req, data, val)
    new = method.unlearn(model, unlearn_data)
    assert new is not model and type(new) is type(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert all(p.requires_grad for p in model.parameters()), "input model was frozen"
    assert not new.training, "the model must come back in the mode it was handed over in (eval)"
    assert all(torch.isfinite(p).all() for p in new.parameters())
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items()), f"{name} left the model unchanged"
    u, target = unlearn_data.unlearn, image_accuracy(reference, unlearn_data.unlearn)
    assert abs(image_accuracy(new, u) - target) < abs(image_accuracy(model, u) - target), f"{name} did not forget"
    metrics = request_metrics(new, model, unlearn_data, test)
    assert {"acc_fused", "acc_image", "acc_audio", "mia_svc", "mia_loss_auc", "retain_cka_image"} <= {
        m.name for m in metrics
    }


@pytest.mark.parametrize("name", CLASSIFIER_METHODS)
def test_full_deletion_runs_and_keeps_the_input(setup, name):
    data, _, val, _, model, _ = setup
    req = ForgetRequest.random_fraction(data, 0.25, seed=1, modalities=("image", "audio"))
    before = copy.deepcopy(model.state_dict())
    new = UNLEARNERS.create(name, **{**config_for(name), "epochs": 1}).unlearn(
        model, UnlearnData.from_request(req, data, val)
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items())


def test_training_mode_is_restored(setup):
    data, req, val, _, model, _ = setup
    train_mode = copy.deepcopy(model).train()
    new = UNLEARNERS.create("finetune", epochs=1, progress=False).unlearn(
        train_mode, UnlearnData.from_request(req, data, val)
    )
    assert new.training


def test_methods_needing_retain_refuse_without_it(setup):
    data, _, _, _, model, _ = setup
    empty = data.take(torch.tensor([], dtype=torch.long))
    u = UnlearnData(data.take(torch.arange(8)), empty)
    needing = [n for n in CLASSIFIER_METHODS if UNLEARNERS.get(n).requires_retain]
    assert "finetune" in needing and "ccu" in needing
    for name in needing:
        with pytest.raises(DataError, match=f"{name} needs data to keep"):
            UNLEARNERS.create(name, progress=False).unlearn(model, u)
    UNLEARNERS.create("grad_ascent", epochs=1, progress=False).unlearn(model, u)  # it needs none


def test_bad_inputs(setup):
    data, _, _, _, model, _ = setup
    u = data.take(torch.arange(8))
    with pytest.raises(DataError, match="unlearn set is empty"):
        UNLEARNERS.create("ccu").unlearn(model, UnlearnData(u.take(torch.tensor([], dtype=torch.long)), data))
    with pytest.raises(DataError, match=r"cannot forget modality \['text'\]"):
        UNLEARNERS.create("ccu").unlearn(model, UnlearnData(u, data, frozenset({"text"})))
    with pytest.raises(ConfigError, match="unknown CCUConfig key"):
        UNLEARNERS.create("ccu", lambda_z=1.0)
    with pytest.raises(ConfigError, match="epochs must be >= 0"):
        UNLEARNERS.create("finetune", epochs=-2)


def test_a_model_without_the_capabilities_gets_one_error_naming_them(setup):
    data, *_ = setup
    with pytest.raises(ConfigError, match=r"lacks embed, features.*docs/own-model.md"):
        UNLEARNERS.create("ccu").unlearn(torch.nn.Linear(2, 2), UnlearnData(data.take(torch.arange(8)), data))


def test_divergence_guard(setup):
    data, _, _, _, model, _ = setup
    u = data.take(torch.arange(8)).with_inputs(image=torch.full((8, 1, 16, 16), 1e38))
    with pytest.raises(DivergenceError, match="no model is returned"):
        UNLEARNERS.create("grad_ascent", epochs=1, progress=False).unlearn(model, UnlearnData(u, data))


def test_seeded_methods_are_deterministic(setup):
    data, req, val, _, model, _ = setup
    unlearn_data = UnlearnData.from_request(req, data, val)
    runs = [UNLEARNERS.create("ccu", **TEST_CONFIG).unlearn(model, unlearn_data) for _ in range(2)]
    assert all(
        torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True)
    )
