"""A forget run checkpoints every epoch in its work folder and resumes bit-identically after a kill."""

import json
import textwrap
from pathlib import Path

import pytest
import torch

from mmunlearn.checkpoint import load_checkpoint, save_checkpoint
from mmunlearn.data import ForgetRequest
from mmunlearn.errors import CheckpointError
from mmunlearn.models import build_model
from mmunlearn.pipeline import run_request
from mmunlearn.train import TrainConfig, train_model
from mmunlearn.unlearn import UNLEARNERS, UnlearnData
from sigkill import kill_after
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
TESTS = Path(__file__).resolve().parents[1]
# 16 samples to forget at batch 8: 2 (or 4, with a retain phase) steps per epoch
METHOD = {"epochs": 6, "lr": 3e-3, "batch_size": 8, "retain_batch_size": 16, "progress": False}


def _data() -> UnlearnData:
    train = make_av(64)
    request = ForgetRequest.random_fraction(train, 0.25, seed=0)
    return UnlearnData.from_request(request, train, make_av(32, seed=4, name="val"))


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """A trained tiny classifier, saved, so that a subprocess starts from the very same weights."""
    folder = tmp_path_factory.mktemp("original")
    model = train_model(build_model("multimodal-classifier", 0, **CFG), make_av(64), TrainConfig(
        epochs=4, batch_size=16, progress=False)).model  # fmt: skip
    save_checkpoint(folder, model)
    return folder


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _progress(work: Path) -> int:
    try:
        return int(json.loads((work / "manifest.json").read_text())["progress"])
    except (OSError, ValueError, KeyError):
        return 0


KILL_SCRIPT = textwrap.dedent(
    """
    import importlib, sys, time
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r}); sys.path.insert(0, {here!r})
    from test_resume import METHOD, _data
    from mmunlearn.checkpoint import load_checkpoint
    from mmunlearn.unlearn import UNLEARNERS
    B = importlib.import_module("mmunlearn.unlearn.base")
    fast_step = B.optimizer_step
    def slow_step(*a, **k):
        time.sleep(0.05)  # slow enough to be killed mid-run
        return fast_step(*a, **k)
    B.optimizer_step = slow_step
    model = load_checkpoint({original!r}).model.eval()
    UNLEARNERS.create({method!r}, **METHOD).unlearn(model, _data(), work_dir=sys.argv[1])
    """
)


@pytest.mark.parametrize("method", ["ccu", "random_label"])
def test_a_killed_forget_resumes_to_the_same_weights(tmp_path, original, method):
    """ccu (state refreshed per epoch) and random_label (random labels drawn every step) after a SIGKILL."""
    script = KILL_SCRIPT.format(
        tests=str(TESTS), here=str(Path(__file__).parent), original=str(original), method=method
    )
    work = tmp_path / "work"
    killed_at = kill_after(script, work, _progress, 2)
    assert 2 <= killed_at < METHOD["epochs"], f"killed after epoch {killed_at}: the run was not interrupted mid-way"
    model = load_checkpoint(original).model.eval()
    resumed = UNLEARNERS.create(method, **METHOD).unlearn(model, _data(), work_dir=work)
    assert _progress(work) == METHOD["epochs"]
    straight = UNLEARNERS.create(method, **METHOD).unlearn(model, _data())
    assert _same(resumed, straight)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", ["salun", "boundary_shrink", "multidelete", "scrub"])
def test_an_interrupted_forget_resumes_to_the_same_weights(tmp_path, original, method, monkeypatch):
    """In process: states of every shape (mask dicts, a tensor, none) and per-step random draws."""
    import mmunlearn.unlearn.base as B

    model = load_checkpoint(original).model.eval()
    straight = UNLEARNERS.create(method, **METHOD).unlearn(model, _data())
    calls, real = {"n": 0}, B.optimizer_step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 2 or 4, depending on the phases
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(B, "optimizer_step", interrupted)
    with pytest.raises(Interrupt):
        UNLEARNERS.create(method, **METHOD).unlearn(model, _data(), work_dir=tmp_path)
    monkeypatch.setattr(B, "optimizer_step", real)
    assert 1 <= _progress(tmp_path) < METHOD["epochs"]
    resumed = UNLEARNERS.create(method, **METHOD).unlearn(model, _data(), work_dir=tmp_path)
    assert _same(resumed, straight)
    again = UNLEARNERS.create(method, **METHOD).unlearn(model, _data(), work_dir=tmp_path)  # finished: no work
    assert _same(again, straight)


def test_another_runs_work_is_replaced_not_resumed(tmp_path, original, caplog):
    model = load_checkpoint(original).model.eval()
    UNLEARNERS.create("grad_ascent", **{**METHOD, "epochs": 1}).unlearn(model, _data(), work_dir=tmp_path)
    other = {**METHOD, "epochs": 1, "lr": 1e-3}
    with caplog.at_level("WARNING"):
        new = UNLEARNERS.create("grad_ascent", **other).unlearn(model, _data(), work_dir=tmp_path)
    assert "unfinished work of another forget run; starting over" in caplog.text
    assert _same(new, UNLEARNERS.create("grad_ascent", **other).unlearn(model, _data()))
    (tmp_path / "manifest.json").write_text('{"format": "mmunlearn-checkpoint/1"}')
    with pytest.raises(CheckpointError, match="not an mmunlearn-work/1 manifest"):
        UNLEARNERS.create("grad_ascent", **other).unlearn(model, _data(), work_dir=tmp_path)


def test_run_request_passes_the_work_folder_down(tmp_path, original):
    model = load_checkpoint(original).model.eval()
    train = make_av(64)
    request = ForgetRequest.random_fraction(train, 0.25, seed=0)
    method = UNLEARNERS.create("finetune", **{**METHOD, "epochs": 2})
    result = run_request(model, train, request, method, work_dir=tmp_path / "work")
    assert _progress(tmp_path / "work") == 2
    assert _same(result.model, UNLEARNERS.create("finetune", **{**METHOD, "epochs": 2}).unlearn(model, result.data))


def test_retrain_resumes_from_its_training_checkpoint(tmp_path, original):
    model = load_checkpoint(original).model.eval()
    config = {"epochs": 2, "batch_size": 16, "progress": False}
    first = UNLEARNERS.create("retrain", **config).unlearn(model, _data(), work_dir=tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["training"]["finished"]
    again = UNLEARNERS.create("retrain", **config).unlearn(model, _data(), work_dir=tmp_path)
    assert _same(first, again)
