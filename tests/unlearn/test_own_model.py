"""A user's own audio-visual network, written here (not from mmunlearn.models), forgotten with every
registered classifier unlearner through the public API (docs/own-model.md shows the same code)."""

import copy

import pytest
import torch
from torch import nn

import mmunlearn
from mmunlearn.errors import ConfigError
from mmunlearn.models.protocols import Classifier, kind_names
from toy import make_av


# -- the user's code -----------------------------------------------------------------------------------
class MyAVNet(nn.Module):
    """Someone's audio-visual classifier: a small CNN for images, an MLP for spectrograms, a linear head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.vision = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 16)
        )
        self.hearing = nn.Sequential(nn.Flatten(), nn.Linear(8 * 16, 32), nn.ReLU(), nn.Linear(32, 16))
        self.classifier = nn.Linear(32, classes)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([self.vision(image), self.hearing(audio)], dim=1))


def adapt(net: MyAVNet) -> mmunlearn.ClassifierAdapter:
    """The whole adapter: which module encodes which modality, the head, the feature sizes."""
    return mmunlearn.ClassifierAdapter(
        encoders={"image": net.vision, "audio": net.hearing},
        head=net.classifier,
        feature_dims={"image": 16, "audio": 16},
        network=net,
    )


# -- the tests ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    splits = {"train": make_av(96), "val": make_av(32, seed=4, name="val"), "test": make_av(32, seed=5, name="test")}
    model = adapt(MyAVNet())
    mmunlearn.train_model(model, splits["train"], mmunlearn.TrainConfig(epochs=4, batch_size=16, progress=False))
    return model.eval(), splits


def test_the_adapter_satisfies_the_classifier_protocol(trained):
    model, _ = trained
    assert isinstance(model, Classifier)
    net_out = model.network(torch.zeros(2, 1, 16, 16), torch.zeros(2, 8, 16))
    batch = {"image": torch.zeros(2, 1, 16, 16), "audio": torch.zeros(2, 8, 16)}
    torch.testing.assert_close(model(batch), net_out)  # same network, same logits


@pytest.mark.parametrize(
    "method", [n for n in mmunlearn.UNLEARNERS.names() if Classifier in mmunlearn.UNLEARNERS.get(n).requires]
)
def test_every_classifier_unlearner_forgets_the_users_model(trained, method):
    model, splits = trained
    assert "classifier" in kind_names(mmunlearn.UNLEARNERS.get(method).requires)
    before = copy.deepcopy(model.state_dict())
    request = mmunlearn.ForgetRequest.random_fraction(splits["train"], 0.25, seed=0)
    config = {"epochs": 1, "batch_size": 16} if method == "retrain" else {"epochs": 1}
    result = mmunlearn.forget(model, splits, request, method=method, progress=False, **config)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the user's model was modified"
    new = result.model
    assert isinstance(new.network, MyAVNet) and new.network is not model.network
    assert any(not torch.equal(before[k], v) for k, v in new.state_dict().items())
    # the user gets their own network back, edited, and uses it with their own forward
    assert new.network.vision is new.encoders["image"] and new.network.classifier is new.head
    assert new.network(torch.zeros(1, 1, 16, 16), torch.zeros(1, 8, 16)).shape == (1, 4)
    assert {m.name for m in result.metrics} >= {"acc_fused", "acc_image", "mia_svc"}
    assert result.receipt["method"]["name"] == method and result.seconds > 0


def test_a_module_that_lacks_capabilities_gets_one_clear_error(trained):
    _, splits = trained
    request = mmunlearn.ForgetRequest.random_fraction(splits["train"], 0.25, seed=0)
    with pytest.raises(ConfigError) as err:
        mmunlearn.forget(MyAVNet(), splits, request, method="ccu")
    message = str(err.value)
    assert "embed" in message and "logits_from_features" in message and "docs/own-model.md" in message


def test_retrain_refuses_parameters_it_cannot_reinitialise(trained):
    _, splits = trained

    class Gained(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.gain = inner, nn.Parameter(torch.ones(1))  # no reset_parameters() covers gain

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gain * self.inner(x)

    net = MyAVNet()
    model = mmunlearn.ClassifierAdapter(
        {"image": Gained(net.vision), "audio": net.hearing}, net.classifier, {"image": 16, "audio": 16}
    )
    request = mmunlearn.ForgetRequest.random_fraction(splits["train"], 0.25, seed=0)
    with pytest.raises(ConfigError, match=r"reset_parameters\(\) covers encoders.image.gain"):
        mmunlearn.forget(model, splits, request, method="retrain", epochs=1)
