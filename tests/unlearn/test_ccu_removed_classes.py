"""CCU's calibration when a request removes a whole class: those samples of U are not stopped at the unseen-data
level (`uncapped_removed_classes`); every other request runs exactly as before."""

from __future__ import annotations

import math

import torch

from mmunlearn.data import ForgetRequest
from mmunlearn.models import build_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from mmunlearn.unlearn.ccu import uncapped_removed_classes
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = {"epochs": 1, "batch_size": 8, "progress": False}


def test_uncapped_removed_classes_matches_naive():
    targets = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5])
    u_labels = torch.tensor([0, 1, 2, 1, 3])
    kept = torch.tensor([1, 1, 3, 0])
    got = uncapped_removed_classes(targets, u_labels, kept)
    expected = [t if y in {0, 1, 3} else math.inf for t, y in zip(targets.tolist(), u_labels.tolist(), strict=True)]
    assert got.tolist() == expected


def run_ccu(request_of, **config):  # type: ignore[no-untyped-def]
    data = make_av(64)
    request = request_of(data)
    model = build_model("multimodal-classifier", 0, modality_dropout=0.0, **CFG)
    method = UNLEARNERS.create("ccu", **FAST, **config)
    targets: list[torch.Tensor] = []
    real = method.on_epoch_start

    def spy(model, run, epoch):  # type: ignore[no-untyped-def]
        real(model, run, epoch)
        targets.append(run.state.targets.clone())

    method.on_epoch_start = spy  # type: ignore[method-assign]
    out = method.unlearn(model, UnlearnData.from_request(request, data, make_av(32, 3)), original=model)
    return out, targets


def test_a_removed_class_is_forgotten_without_the_cap():
    one_class = lambda data: ForgetRequest.one_class(data, 2)  # noqa: E731
    _, targets = run_ccu(one_class)
    assert targets and all(bool(torch.isinf(t).all()) for t in targets)  # every sample of U is of class 2
    _, capped = run_ccu(one_class, removed_classes=False)
    assert all(bool(torch.isfinite(t).all()) for t in capped)


def test_other_requests_run_exactly_as_before():
    random = lambda data: ForgetRequest.random_fraction(data, 0.25, 0, ("image",))  # noqa: E731
    new, targets = run_ccu(random)
    old, _ = run_ccu(random, removed_classes=False)
    assert all(bool(torch.isfinite(t).all()) for t in targets)  # every class keeps retained images
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in new.state_dict().items())
