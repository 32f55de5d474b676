import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mmunlearn.checkpoint import load_checkpoint
from mmunlearn.errors import CheckpointError, ConfigError, DivergenceError
from mmunlearn.evaluate import evaluate
from mmunlearn.models import build_model
from mmunlearn.train import TrainConfig, lr_at, train_model
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
FAST = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=3, progress=False)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_and_is_deterministic(tiny_av):
    a = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST)
    b = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST)
    assert _same(_weights(a.model), _weights(b.model))
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    acc = {m.name: m.value for m in evaluate(a.model, {"train": tiny_av})}
    assert acc["acc_fused"] > 0.9


def test_global_rng_is_left_alone(tiny_av):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST.replace(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def _interrupt_in_epoch_3(out, data, monkeypatch) -> None:
    """Train into ``out`` and interrupt it at the 10th step (epoch 3 of 4 steps each)."""
    import importlib

    T = importlib.import_module("mmunlearn.train")
    real_step, calls = T.optimizer_step, {"n": 0}

    def interrupted_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(T, "optimizer_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_model(build_model("multimodal-classifier", 0, **CFG), data, FAST, out_dir=out)
    monkeypatch.setattr(T, "optimizer_step", real_step)


def test_resume_from_checkpoint_gives_the_same_weights(tmp_path, tiny_av, monkeypatch):
    full = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST)
    _interrupt_in_epoch_3(tmp_path, tiny_av, monkeypatch)
    assert json.loads((tmp_path / "manifest.json").read_text())["training"]["epoch"] == 2
    resumed = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST, out_dir=tmp_path)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 2
    assert _same(_weights(full.model), _weights(resumed.model))
    again = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST, out_dir=tmp_path)
    assert again.epochs_run == 0 and _same(_weights(full.model), _weights(again.model))


KILL_SCRIPT = textwrap.dedent(
    """
    import importlib, sys, time
    sys.path.insert(0, {tests!r})
    from toy import make_av
    from mmunlearn.models import build_model
    from mmunlearn.train import TrainConfig, train_model
    T = importlib.import_module("mmunlearn.train")
    slow_step = T.optimizer_step
    def step(*a, **k):
        time.sleep(0.01)  # slow enough to be killed mid-run
        return slow_step(*a, **k)
    T.optimizer_step = step
    cfg = {cfg!r}
    train_model(build_model("multimodal-classifier", 0, **cfg), make_av(), TrainConfig(**{train!r}), out_dir=sys.argv[1])
    """
)


def test_resume_after_kill_gives_the_same_final_weights(tmp_path, tiny_av):
    config = FAST.replace(epochs=8)
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), cfg=CFG, train=config.__dict__)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env={**os.environ, "PYTHONHASHSEED": "0"})
    deadline = time.time() + 60
    while time.time() < deadline:
        manifest = out / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text())["training"]["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((out / "manifest.json").read_text())["training"]
    assert not state["finished"], "the run finished before it could be killed"
    load_checkpoint(out)  # what the kill left behind is a complete, verified checkpoint
    resumed = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, config, out_dir=out)
    assert resumed.resumed_from >= 2
    straight = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, config)
    assert _same(_weights(straight.model), _weights(resumed.model))


def test_other_run_in_out_dir_is_refused(tmp_path, tiny_av):
    train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST.replace(epochs=1), out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="different run"):
        train_model(
            build_model("multimodal-classifier", 0, **CFG), make_av(seed=9), FAST.replace(epochs=1), out_dir=tmp_path
        )


def test_divergence_restores_last_good_weights(tiny_av):
    model = build_model("multimodal-classifier", 0, **CFG)
    before = _weights(model)
    bad = tiny_av.with_inputs(image=torch.full_like(tiny_av.inputs["image"], 1e38))
    with pytest.raises(DivergenceError, match="restored the weights"):
        train_model(model, bad, FAST)
    assert _same(before, _weights(model))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_config_validation():
    with pytest.raises(ConfigError, match="epochs must be >= 0, got -1"):
        TrainConfig(epochs=-1)
    with pytest.raises(ConfigError, match="unknown TrainConfig key"):
        FAST.replace(epochz=3)
    with pytest.raises(ConfigError, match="empty dataset"):
        train_model(
            build_model("multimodal-classifier", 0, **CFG), make_av().take(torch.tensor([], dtype=torch.long)), FAST
        )


def test_lr_schedule():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)


def test_the_training_time_adds_up_across_resumes(tmp_path, tiny_av, monkeypatch):
    _interrupt_in_epoch_3(tmp_path, tiny_av, monkeypatch)
    first = json.loads((tmp_path / "manifest.json").read_text())["training"]["seconds"]
    resumed = train_model(build_model("multimodal-classifier", 0, **CFG), tiny_av, FAST, out_dir=tmp_path)
    assert first > 0 and resumed.total_seconds == pytest.approx(first + resumed.seconds)
    total = json.loads((tmp_path / "manifest.json").read_text())["training"]["seconds"]
    assert first < total <= resumed.total_seconds
