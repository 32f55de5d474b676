"""The divergence guard sees every step (the last included), absurd lrs are config errors, NaN data is refused."""

import math

import pytest
import torch
from torch import Tensor

from mmunlearn.data import ForgetRequest
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.errors import ConfigError, DataError, DivergenceError
from mmunlearn.metrics.outputs import classifier_logits, pair_embeddings
from mmunlearn.models import build_model
from mmunlearn.protectors import PROTECTORS
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from mmunlearn.unlearn.grad_ascent import GradAscent
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


@pytest.fixture(scope="module")
def trained():
    data = make_av(64)
    model = train_model(build_model("multimodal-classifier", 0, **CFG), data, TrainConfig(
        epochs=3, batch_size=16, progress=False)).model.eval()  # fmt: skip
    return model, UnlearnData.from_request(ForgetRequest.random_fraction(data, 0.25, seed=0), data)


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values())


def test_a_huge_lr_on_the_last_step_is_caught(trained):
    """lr=1e8, one epoch of one step: the weights stay finite, the outputs do not; no model comes back."""
    model, data = trained
    with pytest.raises(DivergenceError, match=r"outputs became NaN/inf.*try a lower lr"):
        UNLEARNERS.create("grad_ascent", lr=1e8, epochs=1, batch_size=64, progress=False).unlearn(model, data)
    with pytest.raises(DivergenceError, match="try a lower lr"):  # several steps per epoch
        UNLEARNERS.create("grad_ascent", lr=1e8, epochs=1, batch_size=4, progress=False).unlearn(model, data)


def test_training_catches_its_last_step_and_restores_the_weights():
    model = build_model("multimodal-classifier", 0, **CFG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DivergenceError, match=r"at epoch 1, step 1; restored the weights.*try a lower lr"):
        train_model(model, make_av(64), TrainConfig(epochs=1, batch_size=64, lr=1e8, warmup_epochs=0, progress=False))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class BreaksOnLastStep(GradAscent):
    """A method whose last step leaves a NaN weight (the loss before it was finite)."""

    name = "breaks_on_last_step"

    def after_step(self, model, run) -> None:
        if self._steps_left(run) == 0:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.nan

    def _steps_left(self, run) -> int:
        self.seen = getattr(self, "seen", 0) + 1
        return self.steps_per_phase(run.data, "unlearn") * self.config.epochs - self.seen


def test_the_weights_are_checked_after_every_step_the_last_included(trained):
    model, data = trained
    method = BreaksOnLastStep(epochs=2, batch_size=8, progress=False)
    with pytest.raises(DivergenceError, match=r"weights became NaN/inf in epoch 2.*try a lower lr"):
        method.unlearn(model, data)


@pytest.mark.parametrize("lr", [1e39, math.inf, math.nan, 0.0, -1e-3])
def test_absurd_learning_rates_are_config_errors(lr):
    with pytest.raises(ConfigError, match="lr must be a positive number at most 1e\\+30"):
        UNLEARNERS.create("grad_ascent", lr=lr)
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=lr)
    with pytest.raises(ConfigError, match="lr must be"):
        PROTECTORS.create("mem", lr=lr)


def test_with_inputs_refuses_nan_and_inf():
    data = make_av(8)
    for bad in (math.nan, math.inf):
        image = data.inputs["image"].clone()
        image[3, 0, 0, 0] = bad
        with pytest.raises(DataError, match=r"modality 'image' of dataset 'tiny-av' contains NaN or inf"):
            data.with_inputs(image=image)


def _poisoned(data, modality: str = "image"):
    """``data`` with one NaN written into its inputs in place (as user code might, after the checks)."""
    values: Tensor = data.inputs[modality]
    values.view(-1)[5] = math.nan
    return data


def test_evaluation_refuses_nan_inputs(trained):
    model, _ = trained
    data = _poisoned(make_av(16, name="poisoned"), "audio")
    with pytest.raises(DataError, match=r"cannot evaluate: modality 'audio' of dataset 'poisoned' contains NaN"):
        classifier_logits(model, data)
    assert classifier_logits(model, data, "image").isfinite().all()  # the image logits do not use the audio
    vocab = ["[PAD]", "[UNK]", "a", "b", "c"]
    text = torch.randint(2, 5, (8, 6), generator=torch.Generator().manual_seed(0))
    pairs = MultimodalDataset([f"p{i}" for i in range(8)], {"image": torch.rand(8, 3, 8, 8), "text": text},
                              vocab=vocab, name="toy-captions")  # fmt: skip
    pairs.inputs["image"][0, 0, 0, 0] = math.inf
    dual = build_model("dual-encoder", 0, image_shape=[3, 8, 8], vocab=vocab, text_len=6, width=4, embed_dim=16)
    with pytest.raises(DataError, match=r"modality 'image' of dataset 'toy-captions' contains NaN or inf"):
        pair_embeddings(dual, pairs)
    with pytest.raises(DataError, match="contain NaN or inf"):
        PROTECTORS.create("mem").protect(pairs)


def test_the_guard_blames_the_data_not_the_lr_when_the_batch_was_not_finite(trained):
    model, _ = trained
    data = _poisoned(make_av(64))
    with pytest.raises(DivergenceError, match="the data contain NaN/inf") as e:
        train_model(build_model("multimodal-classifier", 0, **CFG), data, TrainConfig(
            epochs=1, batch_size=64, progress=False))  # fmt: skip
    assert "lower lr" not in str(e.value)
    clean = make_av(64)
    u = UnlearnData.from_request(ForgetRequest.random_fraction(clean, 0.25, seed=0), clean)
    _poisoned(u.gold_standard)
    with pytest.raises(DivergenceError, match="the data contain NaN/inf") as e:
        UNLEARNERS.create("finetune", epochs=1, batch_size=64, retain_batch_size=64, progress=False).unlearn(model, u)
    assert "lower lr" not in str(e.value)


def test_checked_step_refuses_a_non_finite_loss_and_check_weights_names_the_model():
    from mmunlearn.errors import DivergenceError
    from mmunlearn.optim import check_weights, checked_step

    layer = torch.nn.Linear(2, 1)
    before = layer.weight.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(DivergenceError, match=r"^helper: the expert's loss became nan \(try a lower lr\)$"):
        checked_step(layer, opt, layer(torch.ones(1, 2)).sum() * float("nan"), None, "helper: the expert's")
    assert torch.equal(layer.weight, before)  # nothing stepped
    checked_step(layer, opt, layer(torch.ones(1, 2)).sum(), None, "helper: the expert's")
    assert not torch.equal(layer.weight, before)
    with torch.no_grad():
        layer.weight[0, 0] = float("inf")
    with pytest.raises(DivergenceError, match="helper: the expert's weights became NaN/inf"):
        check_weights(layer, "helper: the expert's")
