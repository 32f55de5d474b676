"""`--model-factory`: a user's module built by their function, weights from safetensors, every failure named."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mmunlearn.errors import CheckpointError, ConfigError
from mmunlearn.models.factory import build_from_factory, load_weights, parse_factory

FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

def broken():
    raise RuntimeError("no GPU here")

def not_a_module():
    return 42
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models"
    sys.modules.pop("user_models", None)


def test_parse_factory():
    assert parse_factory("pkg.mod:build") == ("pkg.mod", "build")
    for bad in ("pkg.mod", ":build", "pkg:", "pkg:not-a-name"):
        with pytest.raises(ConfigError, match=r"package\.module:function"):
            parse_factory(bad)


def test_builds_and_loads_weights_bit_exactly(factory_module, tmp_path):
    trained = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    save_file(dict(trained.state_dict()), str(tmp_path / "w.safetensors"))
    model = load_weights(build_from_factory(f"{factory_module}:build"), tmp_path / "w.safetensors")
    for name, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)


def test_factory_errors_name_what_failed(factory_module):
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        build_from_factory("no_such_module:build")
    with pytest.raises(ConfigError, match="has no function 'missing'"):
        build_from_factory(f"{factory_module}:missing")
    with pytest.raises(ConfigError, match="failed: RuntimeError: no GPU here"):
        build_from_factory(f"{factory_module}:broken")
    with pytest.raises(ConfigError, match=r"returned int, not a torch\.nn\.Module"):
        build_from_factory(f"{factory_module}:not_a_module")


def test_weights_errors_name_the_keys(factory_module, tmp_path):
    model = build_from_factory(f"{factory_module}:build")
    with pytest.raises(CheckpointError, match="only safetensors"):
        load_weights(model, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(model, tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights(model, tmp_path / "junk.safetensors")
    other = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Linear(2, 2))
    save_file(dict(other.state_dict()), str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected: 3\.bias, 3\.weight; wrong shape: 0\.bias"):
        load_weights(model, tmp_path / "other.safetensors")
