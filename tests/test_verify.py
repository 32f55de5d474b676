"""`mmunlearn verify`: a forget run's weights, manifest and receipt checked against each other.

A good run passes; an edited receipt (reason or metric), weights swapped for another model's (with the
manifest re-hashed, so only the receipt's binding catches it), a wrong key, a missing file and a receipt
saved apart from its model each fail, with exit code 2 and the failing check named.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import mmunlearn
from mmunlearn.checkpoint import save_checkpoint
from mmunlearn.cli import main
from mmunlearn.data import ForgetRequest
from mmunlearn.data.builder import DATASETS, BuiltData, DatasetBuilder
from mmunlearn.data.core import SplitData
from mmunlearn.fileio import listed_files, sha256_file
from mmunlearn.models import build_model
from mmunlearn.pipeline import run_request
from mmunlearn.receipts import FAILED, OK, UNVERIFIED, key_id, receipt_hmac, verify_run
from mmunlearn.unlearn import UNLEARNERS
from toy import make_av

CFG = {"input_shapes": {"image": [1, 16, 16], "audio": [8, 16]}, "num_classes": 4, "feat_dim": 8, "width": 4}
KEY = b"a key the user keeps \x00\xff"


def tiny_model(seed: int = 0):
    return build_model("multimodal-classifier", seed, **CFG)


def forget_run(out: Path, model, key: bytes | None = KEY) -> None:
    train, val, test = make_av(64), make_av(32, seed=4, name="val"), make_av(32, seed=5, name="test")
    request = ForgetRequest.random_fraction(train, 0.25, seed=0, reason="the user asked")
    unlearner = UNLEARNERS.create("grad_ascent", epochs=1, progress=False)
    provenance = {"dataset": "tiny-av", "size": "small", "data_seed": 0}
    run_request(model, train, request, unlearner, validation=val, test=test, out_dir=out, provenance=provenance, sign_key=key)  # fmt: skip


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "run"
    forget_run(out, tiny_model())
    return out


@pytest.fixture
def run_dir(signed_run, tmp_path) -> Path:
    """A private copy of the signed run, free to damage."""
    return Path(shutil.copytree(signed_run, tmp_path / "run"))


@pytest.fixture
def key_file(tmp_path) -> Path:
    (tmp_path / "key").write_bytes(KEY)
    return tmp_path / "key"


def statuses(folder: Path, key: bytes | None = KEY) -> dict[str, str]:
    return {c.name: c.status for c in verify_run(folder, key)}


def failed(folder: Path, key: bytes | None = KEY) -> list[str]:
    return [name for name, status in statuses(folder, key).items() if status == FAILED]


def rehash(folder: Path, name: str) -> None:
    """Update the manifest's SHA-256 of ``name`` to the file's, as someone covering their tracks would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(folder / name)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_receipt(folder: Path, change) -> None:
    receipt = json.loads((folder / "receipt.json").read_text())
    change(receipt)
    (folder / "receipt.json").write_text(json.dumps(receipt, indent=2))


# -- the checks ----------------------------------------------------------------------------------------
def test_a_good_run_passes_every_check(signed_run):
    checks = verify_run(signed_run, KEY)
    assert all(c.status == OK for c in checks), [c for c in checks if c.status != OK]
    names = [c.name for c in checks]
    assert names[0] == "manifest" and {"file model.safetensors", "file receipt.json", "file metrics.json"} <= set(names)
    assert {"coverage", "model", "receipt binds the weights", "receipt metrics", "signature"} <= set(names)


def test_the_receipt_names_the_dataset_and_the_wall_time_and_is_in_the_manifest(signed_run):
    receipt = json.loads((signed_run / "receipt.json").read_text())
    assert receipt["dataset"]["name"] == "tiny-av" and receipt["dataset"]["n"] == 64
    assert receipt["dataset"]["seed"] == 0 and len(receipt["dataset"]["fingerprint"]) == 64
    assert receipt["wall_seconds"] >= receipt["seconds"] > 0
    assert receipt["signature"]["key_id"] == key_id(KEY)
    assert receipt["signature"]["hmac"] == receipt_hmac(receipt, KEY)
    assert set(listed_files(signed_run)) == {"model.safetensors", "receipt.json", "metrics.json"}


def test_a_signed_receipt_without_a_key_is_reported_unverified(signed_run):
    assert statuses(signed_run, None)["signature"] == UNVERIFIED
    assert not failed(signed_run, None)


def test_an_edited_reason_is_caught_by_the_manifest_and_by_the_signature(run_dir):
    edit_receipt(run_dir, lambda r: r["request"].update(reason="nobody asked"))
    assert failed(run_dir) == ["file receipt.json", "signature"]
    rehash(run_dir, "receipt.json")  # the manifest covered too: only the keyed signature tells
    assert failed(run_dir) == ["signature"]
    assert not failed(run_dir, None)


def test_an_edited_metric_is_caught(run_dir):
    edit_receipt(run_dir, lambda r: r["metrics"][0].update(value=0.123))
    rehash(run_dir, "receipt.json")
    assert failed(run_dir) == ["receipt metrics", "signature"]
    detail = next(c.detail for c in verify_run(run_dir, KEY) if c.name == "receipt metrics")
    assert "0.123 in the receipt" in detail


def test_swapped_weights_are_caught_by_the_receipt_binding(run_dir, tmp_path):
    save_checkpoint(tmp_path / "other", tiny_model(seed=7))
    shutil.copyfile(tmp_path / "other" / "model.safetensors", run_dir / "model.safetensors")
    rehash(run_dir, "model.safetensors")
    assert failed(run_dir) == ["model", "receipt binds the weights"]


def test_a_wrong_key_fails(signed_run):
    assert failed(signed_run, b"another key") == ["signature"]
    detail = next(c.detail for c in verify_run(signed_run, b"another key") if c.name == "signature")
    assert "another key" in detail


def test_a_missing_file_fails(run_dir):
    (run_dir / "metrics.json").unlink()
    assert failed(run_dir) == ["file metrics.json", "receipt metrics"]


def test_a_receipt_not_saved_with_the_model_fails(run_dir):
    """A run whose manifest does not cover its receipt (as before receipts were bound) is not verified."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    del manifest["files"]["receipt.json"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert failed(run_dir) == ["coverage"]


def test_an_unsigned_run_with_a_key_fails_and_without_passes(tmp_path):
    forget_run(tmp_path / "run", tiny_model(), key=None)
    assert not failed(tmp_path / "run", None)
    assert failed(tmp_path / "run", KEY) == ["signature"]


# -- a user's model (not registered) -------------------------------------------------------------------
class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vision = nn.Sequential(nn.Flatten(), nn.Linear(256, 8))
        self.hearing = nn.Sequential(nn.Flatten(), nn.Linear(128, 8))
        self.classifier = nn.Linear(16, 4)


def test_a_users_model_is_saved_with_a_run_manifest_and_verifies(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    model = mmunlearn.ClassifierAdapter(
        encoders={"image": net.vision, "audio": net.hearing},
        head=net.classifier,
        feature_dims={"image": 8, "audio": 8},
        network=net,
    )
    forget_run(tmp_path / "run", model)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["format"] == "mmunlearn-run/1"
    assert set(manifest["files"]) == {"model.safetensors", "receipt.json", "metrics.json"}
    checks = statuses(tmp_path / "run")
    assert "model" not in checks and set(checks.values()) == {OK}


# -- the command ---------------------------------------------------------------------------------------
def test_the_command_prints_one_line_per_check(signed_run, key_file, capsys):
    assert main(["verify", str(signed_run), "--key", str(key_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("ok ") for line in out) == len(verify_run(signed_run, KEY))
    assert out[-1].startswith(f"verified {signed_run}")
    assert main(["verify", str(signed_run)]) == 0
    out = capsys.readouterr().out
    assert "unverified" in out and "give --key" in out


def test_the_command_fails_with_exit_code_2(run_dir, key_file, capsys):
    edit_receipt(run_dir, lambda r: r.update(seconds=0.0))
    assert main(["verify", str(run_dir), "--key", str(key_file)]) == 2
    captured = capsys.readouterr()
    assert "FAILED     file receipt.json" in captured.out
    assert captured.err.startswith("error: 2 of ") and captured.err.count("\n") == 1
    assert main(["verify", str(run_dir), "--json"]) == 2
    record = json.loads(capsys.readouterr().out)
    assert record["passed"] is False
    assert {"name": "file receipt.json", "status": "FAILED"} in [
        {k: c[k] for k in ("name", "status")} for c in record["checks"]
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "error: no run folder at nowhere"),
        (["RUN", "--key", "absent.key"], "error: key file absent.key not found"),
        (["RUN", "--key", "empty.key"], "error: key file empty.key is empty"),
    ],
)
def test_bad_arguments_are_one_error_line(signed_run, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    Path("empty.key").write_bytes(b"")
    assert main([str(signed_run) if a == "RUN" else a for a in ["verify", *args]]) == 2
    assert capsys.readouterr().err == message + "\n"


class TinyAV(DatasetBuilder):
    """The toy audio-visual set as a built-in dataset, so that the `forget` command can run on it."""

    name = "test-verify-av"
    modalities = ("image", "audio")
    num_classes = 4

    def build(self, size: str, seed: int, progress: bool = False) -> BuiltData:
        splits = {}
        for split, data in (("train", make_av(64)), ("val", make_av(32, 4, "val")), ("test", make_av(32, 5, "test"))):
            splits[split] = SplitData(list(data.ids), dict(data.inputs), data.labels, groups=dict(data.groups))
        return BuiltData(splits)


def test_forget_sign_key_then_verify_key_through_the_cli(tmp_path, key_file, monkeypatch, capsys):
    monkeypatch.setitem(DATASETS._entries, "test-verify-av", TinyAV)
    provenance = {"dataset": "test-verify-av", "size": "small", "data_seed": 0}
    save_checkpoint(tmp_path / "model", tiny_model(), provenance=provenance)
    out = tmp_path / "forgotten"
    args = ["--model", str(tmp_path / "model"), "--method", "grad_ascent", "--forget-fraction", "0.25"]
    code = main(["forget", *args, "--out", str(out), "--set", "epochs=1", "--sign-key", str(key_file), "--quiet"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["verify", str(out), "--key", str(key_file)]) == 0
    assert "HMAC-SHA256 matches" in capsys.readouterr().out
