"""The CLI on the user's own things: a dataset on disk in a published layout, a module built by the user's
factory with safetensors weights, and a Hugging Face ``save_pretrained`` folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mmunlearn
from data.layout_fixtures import write_image
from mmunlearn.cli import main

USER_MODULE = """
from torch import nn
import mmunlearn

class MyAVNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                    nn.Linear(64, 16))
        self.hearing = nn.Sequential(nn.Flatten(), nn.Linear(40 * 64, 16))
        self.classifier = nn.Linear(32, 10)

def build():
    net = MyAVNet()
    return mmunlearn.ClassifierAdapter(encoders={"image": net.vision, "audio": net.hearing}, head=net.classifier,
                                       feature_dims={"image": 16, "audio": 16}, network=net)
"""


WORDS = ["red", "blue", "green", "cat", "dog", "tree", "car", "house"]


def make_caption_dataset(root: Path, n: int) -> Path:
    """A Karpathy-layout folder: ``n`` images of mixed modes and sizes, two captions each; 2/3 train."""
    images = []
    for k in range(n):
        p = write_image(root / "imgs" / f"im{k}", k)
        split = "train" if k < n * 2 // 3 else ("val" if k < n * 5 // 6 else "test")
        caps = [f"a {WORDS[k % 8]} {WORDS[(k // 8) % 8]} picture", f"the {WORDS[(k + 3) % 8]} thing {k % 5}"]
        images.append({"filename": p.name, "filepath": "imgs", "split": split, "sentences": [{"raw": c} for c in caps]})
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    return root


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--quiet", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if code == 0 and out else {}


def test_train_and_forget_a_dataset_in_the_karpathy_layout(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMUNLEARN_DATA", str(tmp_path / "cache"))
    root = make_caption_dataset(tmp_path / "flickr", n=40)
    code, trained = run(capsys, "train", "--dataset", str(root), "--layout", "karpathy", "--epochs", "1",
                        "--out", str(tmp_path / "m"))  # fmt: skip
    assert code == 0 and trained["config"]["dataset"] == str(root)
    prov = mmunlearn.load_checkpoint(tmp_path / "m").manifest["provenance"]
    assert prov["dataset"] == str(root.resolve()) and prov["layout"] == "karpathy"
    code, forgot = run(capsys, "forget", "--model", str(tmp_path / "m"), "--method", "finetune", "--set", "epochs=1",
                       "--forget-fraction", "0.2", "--out", str(tmp_path / "f"))  # fmt: skip
    assert code == 0 and forgot["request"]["n_ids"] == 10  # 20% of the 52 training captions (26 images)
    assert (tmp_path / "f" / "metrics.json").is_file()


def test_forget_a_users_module_from_its_factory_and_weights(tmp_path, capsys, monkeypatch):
    (tmp_path / "user_av.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_av

    torch.manual_seed(0)
    model = user_av.build()
    splits = mmunlearn.load_dataset("av-digits", "small")
    mmunlearn.train_model(model, splits.train, mmunlearn.TrainConfig(epochs=1, batch_size=64, progress=False))
    save_file(dict(model.state_dict()), str(tmp_path / "w.safetensors"))
    args = ["forget", "--model", str(tmp_path / "w.safetensors"), "--model-factory", "user_av:build",
            "--dataset", "av-digits", "--method", "finetune", "--set", "epochs=1", "--forget-fraction", "0.05"]  # fmt: skip
    code, forgot = run(capsys, *args, "--out", str(tmp_path / "f"))
    assert code == 0 and forgot["method"]["name"] == "finetune" and forgot["request"]["modalities"] == ["image"]
    again = user_av.build()  # the output is the same module's weights: the factory loads them back
    mmunlearn.models.factory.load_weights(again, tmp_path / "f" / "model.safetensors")
    sys.modules.pop("user_av", None)
    assert main([*args[:4], "user_av:nope", *args[5:], "--out", str(tmp_path / "g"), "--quiet"]) != 0
    assert "has no function 'nope'" in capsys.readouterr().err


def test_a_factory_model_needs_its_dataset(tmp_path, capsys):
    code = main(["forget", "--model", str(tmp_path / "w.safetensors"), "--model-factory", "x:y", "--method",
                 "finetune", "--forget-fraction", "0.1", "--out", str(tmp_path / "f"), "--quiet"])  # fmt: skip
    assert code != 0


@pytest.mark.slow
def test_a_hugging_face_clip_folder_is_trained_and_forgotten(tmp_path, capsys):
    pytest.importorskip("transformers")
    from models.test_hf import build_folder

    clip = build_folder("clip", tmp_path / "clip")
    code, _ = run(capsys, "train", "--dataset", "shapes-captions", "--init", str(clip), "--epochs", "1",
                  "--out", str(tmp_path / "m"))  # fmt: skip
    assert code == 0
    code, forgot = run(capsys, "forget", "--model", str(tmp_path / "m"), "--method", "ccu", "--concept",
                       "red circle", "--out", str(tmp_path / "f"))  # fmt: skip
    assert code == 0 and {m["name"] for m in forgot["original_metrics"]} >= {"zs_concept", "mean_recall"}
    code, forgot = run(capsys, "forget", "--model", str(clip), "--dataset", "shapes-captions", "--method",
                       "finetune", "--set", "epochs=1", "--forget-fraction", "0.1", "--out", str(tmp_path / "g"))  # fmt: skip
    assert code == 0 and forgot["request"]["n_ids"] > 0
    code, evaluated = run(capsys, "eval", "--model", str(clip), "--dataset", "shapes-captions", "--splits", "test")
    assert code == 0 and {m["split"] for m in evaluated["metrics"]} == {"test"}
