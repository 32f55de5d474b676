"""Scenario-A suite: the relearning attack measures recovery, it does not wreck the model it attacks."""

import copy

import pytest
import torch

from mmunlearn.metrics.outputs import LogitCache
from mmunlearn.metrics.scenario_a import RelearnConfig, ScenarioAData, _acc, relearn
from mmunlearn.models import build_model
from mmunlearn.train import TrainConfig, train_model
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


@pytest.fixture(scope="module")
def trained():
    data = make_av(128)
    model = train_model(
        build_model("multimodal-classifier", 0, **CFG), data, TrainConfig(epochs=6, batch_size=16, progress=False)
    ).model
    return model, ScenarioAData(data.take(torch.arange(64)), data.take(torch.arange(64, 128)), make_av(32, 5, "test"))


def _rest(d: ScenarioAData, config: RelearnConfig) -> ScenarioAData:
    """U's samples the attack does not train on (the same split `relearn` draws)."""
    n = len(d.unlearn)
    k = min(n - 1, max(8, round(config.fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return d.unlearn.take(perm[k:])


def test_relearn_keeps_a_model_that_knows_u(trained):
    model, d = trained
    before = _acc(LogitCache(model), _rest(d, RelearnConfig()), "image")
    assert before > 0.9
    assert relearn(model, d).value >= before - 0.1  # the old attack (20 steps at 1e-3 on 10%) lost ~60 points


def test_relearn_recovers_hidden_knowledge_more_than_removed_knowledge(trained):
    model, d = trained
    hidden = copy.deepcopy(model)  # encoder intact, image block of the head shrunk: knowledge only hidden
    with torch.no_grad():
        d_ = hidden.config.feat_dim
        hidden.head.weight[:, :d_] *= 0.01
    removed = copy.deepcopy(hidden)  # and the image encoder's weights wiped: nothing left to recover
    with torch.no_grad():
        for p in removed.encoders["image"].parameters():
            p.zero_()
    rest = _rest(d, RelearnConfig())
    assert _acc(LogitCache(hidden), rest, "image") < 0.6
    config = RelearnConfig(steps=30, lr=1e-3)
    assert relearn(hidden, d, config).value > relearn(removed, d, config).value + 0.2
    assert relearn(model, d).value == relearn(model, d).value  # deterministic
