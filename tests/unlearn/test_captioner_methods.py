"""Training-time methods on a generative captioner: the token objective, and grad_ascent / neggrad_plus /
finetune / retrain on a tiny captioner with a concept request."""

import math

import pytest
import torch
import torch.nn.functional as F

import mmunlearn.unlearn.finetune
import mmunlearn.unlearn.grad_ascent
import mmunlearn.unlearn.neggrad_plus
import mmunlearn.unlearn.retrain  # noqa: F401
from mmunlearn.data.request import ForgetRequest
from mmunlearn.errors import ConfigError
from mmunlearn.models import Captioner
from mmunlearn.models.protocols import CaptionerModel
from mmunlearn.pipeline import request_metrics
from mmunlearn.records import CAPTIONER_METRICS
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from mmunlearn.unlearn.base import Run
from mmunlearn.unlearn.objectives import GENERATIVE_KINDS, MODEL_KINDS, task_logits, task_loss
from toy import make_pairs, tiny_captioner

CONCEPT = "red circle"
FAST = {"epochs": 2, "lr": 3e-3, "batch_size": 8}
SUPPORTING = ("grad_ascent", "neggrad_plus", "finetune", "retrain")


@pytest.fixture(scope="module")
def setup():
    train = make_pairs(64)
    model = tiny_captioner(train)
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, seed=0, warmup_epochs=0)
    model = train_model(model, train, config).model.eval()
    data = UnlearnData.from_request(ForgetRequest.concept_pairs(train, CONCEPT), train)
    return model, data


def state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def u_loss(model, data) -> float:
    with torch.no_grad():
        return float(model.eval().loss(data.unlearn.batch(torch.arange(len(data.unlearn)))))


def test_task_logits_are_the_non_pad_caption_tokens(setup) -> None:
    model, data = setup
    batch = data.unlearn.batch(torch.arange(5))
    with torch.no_grad():
        logits, target = task_logits(model, Run(data, None, None, CaptionerModel), batch)
        loss = task_loss(model, Run(data, None, None, CaptionerModel), batch)
    full, rows = model.caption_logits(batch).detach(), []
    for i, text in enumerate(batch["text"].tolist()):  # naive: row by row, words then EOS
        words = [w for w in text if w != 0]
        rows += [(full[i, t], y) for t, y in enumerate([*words, model.eos_id])]
    assert torch.equal(target, torch.tensor([y for _, y in rows]))
    assert torch.allclose(logits, torch.stack([x for x, _ in rows]))
    assert math.isclose(float(loss), float(model.loss(batch).detach()), rel_tol=1e-5)
    assert math.isclose(float(loss), float(F.cross_entropy(logits, target)), rel_tol=1e-6)


def test_only_the_four_methods_declare_the_captioner() -> None:
    assert len(MODEL_KINDS) == 2 and CaptionerModel not in MODEL_KINDS
    for name in SUPPORTING:
        assert UNLEARNERS.get(name).requires == GENERATIVE_KINDS


@pytest.mark.parametrize("name", SUPPORTING)
def test_method_returns_an_edited_captioner(setup, name) -> None:
    model, data = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    overrides = {"epochs": 2, "lr": 3e-3, "batch_size": 8, "warmup_epochs": 0} if name == "retrain" else FAST
    new = UNLEARNERS.create(name, **overrides).unlearn(model, data)
    assert isinstance(new, Captioner) and not new.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert not state_equal(new, model)
    ids = new.generate(data.unlearn.inputs["image"][:4])
    assert int(ids.max()) < len(data.unlearn.vocab) + 2


def test_grad_ascent_raises_the_loss_on_the_concept_pairs(setup) -> None:
    model, data = setup
    new = UNLEARNERS.create("grad_ascent", **FAST).unlearn(model, data)
    assert u_loss(new, data) > u_loss(model, data) + 0.1


def test_neggrad_plus_forgets_more_than_it_loses_on_retain(setup) -> None:
    model, data = setup
    new = UNLEARNERS.create("neggrad_plus", **FAST, beta=0.5).unlearn(model, data)
    assert u_loss(new, data) > u_loss(model, data)


def test_methods_without_captioner_support_refuse_it(setup) -> None:
    import mmunlearn.unlearn.salun  # noqa: F401

    model, data = setup
    with pytest.raises(ConfigError, match="cannot use Captioner"):
        UNLEARNERS.create("salun").unlearn(model, data)


def test_request_metrics_dispatch_to_the_captioning_suite(setup) -> None:
    model, data = setup
    test = make_pairs(24, seed=5, split="test")
    out = request_metrics(model, model, data, test)
    names = {m.name for m in out}
    assert names <= set(CAPTIONER_METRICS) and {"mention_concept", "bleu4", "cider", "latency_ratio"} <= names
