"""``protect`` / ``victim`` commands driven through an argument parser, as the main CLI will wire them."""

from __future__ import annotations

import argparse
import json

import pytest

from mmunlearn.cli.protect import add_commands
from mmunlearn.errors import CheckpointError, ConfigError, DataError
from mmunlearn.overrides import parse_sets, parse_value
from mmunlearn.protectors import ProtectedDataset

TINY = ["--set", "outer_iters=1", "--set", "trigger_iters=1", "--set", "surrogate_steps=1", "--set", "pgd_steps=1",
        "--set", "hotflip_candidates=2"]  # fmt: skip


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="mmunlearn")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code = args.func(args)
    return code, capsys.readouterr().out


def test_parse_values():
    assert parse_value("8/255") == pytest.approx(8 / 255)
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("null") is None
    assert parse_sets(["pgd-steps=2", "lr=1e-3"]) == {"pgd_steps": 2, "lr": 1e-3}
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["pgd_steps"])


@pytest.mark.slow
def test_protect_then_victim_end_to_end(tmp_path, capsys):
    out = tmp_path / "prot"
    code, text = run(capsys, "protect", "--dataset", "shapes-captions", "--method", "mem", "--out", str(out),
                     "--epsilon", "4/255", "--trigger-len", "2", "--seed", "3", "--quiet", "--json", *TINY)  # fmt: skip
    assert code == 0
    summary = json.loads(text)
    assert summary["pairs"] == 1000 and summary["trigger_len"] == 2 and summary["epsilon"] == pytest.approx(4 / 255)
    p = ProtectedDataset.load(out)
    assert p.source["dataset"] == "shapes-captions" and p.config["seed"] == 3
    code, text = run(capsys, "victim", "--protected", str(out), "--epochs", "1", "--quiet", "--json")
    record = json.loads(text)
    assert code == 0 and record["method"] == "mem" and record["seed"] == 4
    assert {m["name"] for m in record["metrics"]} >= {"i2t_r1", "t2i_r1", "mean_recall"}
    code, text = run(capsys, "victim", "--protected", str(out), "--epochs", "1", "--defence", "blur", "--quiet")
    assert code == 0 and "chance" in text and "i2t_r1" in text


def test_protect_human_output_and_bad_inputs(tmp_path, capsys):
    code, text = run(capsys, "protect", "--dataset", "shapes-captions", "--method", "random_noise",
                     "--out", str(tmp_path / "r"), "--quiet")  # fmt: skip
    assert code == 0 and "protected 1000 pairs" in text
    with pytest.raises(ConfigError, match="unknown"):
        run(capsys, "protect", "--dataset", "shapes-captions", "--method", "mem", "--out", str(tmp_path / "x"),
            "--set", "bogus=1", "--quiet")  # fmt: skip
    with pytest.raises(ConfigError, match="epsilon"):
        run(capsys, "protect", "--dataset", "shapes-captions", "--method", "em", "--out", str(tmp_path / "x"),
            "--epsilon", "8", "--quiet")  # fmt: skip
    with pytest.raises(DataError, match="does not fit"):
        run(capsys, "protect", "--dataset", "shapes-captions", "--method", "mem", "--out", str(tmp_path / "x"),
            "--trigger-len", "9", "--quiet")  # fmt: skip
    with pytest.raises(ConfigError, match="unknown protector 'nope'; known protectors: clean"):
        run(capsys, "protect", "--dataset", "shapes-captions", "--method", "nope", "--out", str(tmp_path / "x"))
    with pytest.raises(DataError, match="unknown dataset"):
        run(capsys, "protect", "--dataset", "nope", "--method", "mem", "--out", str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="defence"):
        run(capsys, "victim", "--protected", str(tmp_path / "r"), "--defence", "magic")
    with pytest.raises(CheckpointError, match="not a protected dataset"):
        run(capsys, "victim", "--protected", str(tmp_path / "nothing"), "--quiet")


def test_victim_rejects_a_protection_whose_dataset_changed(tmp_path, capsys):
    out = tmp_path / "r"
    run(capsys, "protect", "--dataset", "shapes-captions", "--method", "random_noise", "--out", str(out), "--quiet")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["source"]["data_sha256"] = "0" * 64
    from mmunlearn.fileio import canonical_json, sha256_bytes

    manifest["source_sha256"] = sha256_bytes(canonical_json(manifest["source"]).encode())
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="other data"):
        run(capsys, "victim", "--protected", str(out), "--epochs", "1", "--quiet")
