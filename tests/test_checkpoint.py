import json
import os

import pytest
import torch

from mmunlearn.checkpoint import load_checkpoint, read_manifest, save_checkpoint, state_sha256
from mmunlearn.errors import CheckpointError
from mmunlearn.fileio import sha256_file
from mmunlearn.models import build_model

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}


@pytest.fixture
def saved(tmp_path):
    model = build_model("multimodal-classifier", 0, **CFG)
    manifest = save_checkpoint(tmp_path / "ck", model, provenance={"dataset": "x"})
    return tmp_path / "ck", model, manifest


def test_round_trip_is_exact(saved):
    folder, model, manifest = saved
    ck = load_checkpoint(folder)
    assert ck.manifest["provenance"] == {"dataset": "x"} and ck.train_state is None
    for (k, a), (k2, b) in zip(model.state_dict().items(), ck.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert manifest["files"]["model.safetensors"] == state_sha256(ck.model)
    assert not list(folder.glob("*.tmp"))


def test_tampered_weights_are_detected(saved):
    folder = saved[0]
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_checkpoint(folder)


def test_truncated_weights_are_detected(saved):
    folder = saved[0]
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or tampered"):
        load_checkpoint(folder)


def test_edited_config_is_detected(saved):
    folder = saved[0]
    m = json.loads((folder / "manifest.json").read_text())
    m["config"]["num_classes"] = 5
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="manifest was edited"):
        load_checkpoint(folder)


def test_unreadable_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint manifest"):
        read_manifest(tmp_path)


class _Payload:
    """Unpickling this object runs ``os.mkdir(marker)``: proof that a loader executed pickle code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _refuse(*args, **kwargs):
    pytest.fail("load_checkpoint called an unpickler")


def test_pickle_is_never_loaded(saved, tmp_path, monkeypatch):
    """A pickle payload in place of the weights, with a matching SHA-256 in the manifest, is refused unrun."""
    folder, marker = saved[0], tmp_path / "payload-ran"
    torch.save({"conv.weight": _Payload(marker)}, folder / "model.safetensors")
    m = json.loads((folder / "manifest.json").read_text())
    m["files"]["model.safetensors"] = sha256_file(folder / "model.safetensors")  # the hash check now passes
    (folder / "manifest.json").write_text(json.dumps(m))
    for target in ("torch.load", "pickle.load", "pickle.loads", "pickle.Unpickler"):
        monkeypatch.setattr(target, _refuse)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(folder)
    assert not marker.exists()
    assert "cannot read" in str(refused.value)  # refused by the safetensors reader, not by the hash check
