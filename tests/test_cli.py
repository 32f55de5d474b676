"""The CLI driven as a user would, on the small built-in sets."""

import json

import pytest

from mmunlearn.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    regs = json.loads(out)
    assert code == 0
    assert regs["datasets"] == ["av-digits", "av-digits-video", "emoji-captions", "scenes-captions", "shapes-captions"]
    assert regs["models"] == ["captioner", "dual-encoder", "hf-dual-encoder", "multimodal-classifier"]
    assert "ccu" in regs["unlearners"] and "retrain" in regs["unlearners"]
    assert "mem" in regs["protectors"] and "clean" in regs["protectors"]
    methods = regs.pop("methods")
    assert all(keys == sorted(keys) for keys in regs.values())
    assert methods["ccu"] == {
        "family": "unlearner",
        "stage": "training-time",
        "model_kinds": ["classifier", "dual-encoder"],
        "paper": methods["ccu"]["paper"],
    }
    assert methods["cliperase"]["model_kinds"] == ["dual-encoder"]
    assert methods["boundary_shrink"]["model_kinds"] == ["classifier"]
    assert methods["mem"]["model_kinds"] == ["dual-encoder"] and methods["mem"]["stage"] == "data-side"
    assert set(methods) == set(regs["unlearners"]) | set(regs["protectors"])
    code, out, _ = run(capsys, "list")
    assert "datasets: av-digits, av-digits-video, emoji-captions, scenes-captions, shapes-captions" in out
    assert "layouts: av-csv, av-frames, coco, csv, imagefolder, karpathy" in out


@pytest.fixture(scope="module")
def av_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("av") / "model"
    code = main(
        ["train", "--dataset", "av-digits", "--size", "small", "--out", str(out), "--epochs", "2", "--quiet", "--json"]
    )
    assert code == 0
    return out


def test_train_then_eval_agree(av_model, capsys):
    manifest = json.loads((av_model / "manifest.json").read_text())
    trained = {(m["split"], m["name"]): m["value"] for m in manifest["metrics"]}
    code, out, _ = run(capsys, "eval", "--model", str(av_model), "--json", "--quiet")
    assert code == 0
    record = json.loads(out)
    assert record["dataset"] == "av-digits"
    for m in record["metrics"]:
        assert m["value"] == pytest.approx(trained[(m["split"], m["name"])])
    names = {m["name"] for m in record["metrics"]}
    assert names == {"acc_fused", "acc_image", "acc_audio"}
    code, out, _ = run(capsys, "eval", "--model", str(av_model), "--quiet")
    assert "| split" in out and "acc_audio" in out and "chance" in out


def test_train_json_record_and_dual_encoder_eval(tmp_path, capsys):
    out_dir = tmp_path / "clip"
    code, out, _ = run(
        capsys, "train", "--dataset", "shapes-captions", "--out", str(out_dir), "--epochs", "1", "--quiet", "--json"
    )
    assert code == 0
    record = json.loads(out)
    assert record["method"] == "dual-encoder" and record["seconds"] > 0
    names = {m["name"] for m in record["metrics"]}
    assert {"i2t_r1", "t2i_r10", "mean_recall"} <= names
    test_r1 = next(m for m in record["metrics"] if m["name"] == "i2t_r1" and m["split"] == "test")
    assert test_r1["chance"] == pytest.approx(1 / 200)
    code, out, _ = run(capsys, "eval", "--model", str(out_dir), "--splits", "test", "--quiet")
    assert code == 0 and "i2t_r1" in out and "chance" in out


def test_train_eval_and_forget_a_captioner(tmp_path, capsys):
    out_dir = tmp_path / "captioner"
    argv = ["train", "--dataset", "shapes-captions", "--model", "captioner", "--out", str(out_dir), "--epochs", "1"]
    code, out, _ = run(capsys, *argv, "--quiet", "--json")
    record = json.loads(out)
    assert code == 0 and record["method"] == "captioner"
    assert {(m["name"], m["split"]) for m in record["metrics"]} >= {("bleu4", "test"), ("cider", "test")}
    code, out, _ = run(capsys, "eval", "--model", str(out_dir), "--splits", "test", "--quiet")
    assert code == 0 and "bleu4" in out
    forget = ["forget", "--model", str(out_dir), "--method", "neggrad_plus", "--concept", "red circle"]
    code, out, _ = run(capsys, *forget, "--out", str(tmp_path / "f"), "--set", "epochs=1", "--quiet", "--json")
    assert code == 0 and any(m["name"] == "mention_concept" for m in json.loads(out)["metrics"])
    code, _, err = run(capsys, *forget[:4], "ccu", "--concept", "red circle", "--out", str(tmp_path / "g"))
    assert code == 2 and "error:" in err and "captioner" in err.lower()
    code, _, err = run(
        capsys, *forget[:4], "token_suppression", "--concept", "red circle", "--out", str(tmp_path / "h")
    )
    assert code == 2 and "decoding-time method" in err and not (tmp_path / "h").exists()


def test_data_build(capsys):
    code, out, _ = run(capsys, "data", "build", "shapes-captions", "--size", "small", "--json", "--quiet")
    info = json.loads(out)
    assert code == 0 and info["splits"] == {"train": 1000, "val": 200, "test": 200}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--dataset", "mnist", "--out", "x"],
            "unknown dataset 'mnist'; known datasets: av-digits, av-digits-video, emoji-captions, scenes-captions, shapes-captions",
        ),
        (
            ["data", "build", "nope"],
            "unknown dataset 'nope'; known datasets: av-digits, av-digits-video, emoji-captions, scenes-captions, shapes-captions",
        ),
        (["train", "--dataset", "av-digits", "--out", "x", "--epochs", "-1"], "epochs must be >= 0, got -1"),
        (["eval", "--model", "/nonexistent"], "/nonexistent is not a checkpoint: manifest.json not found"),
    ],
)
def test_bad_inputs_give_one_clear_error(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv, "--quiet")
    assert code == 2
    assert err.strip() == f"error: {message}"


def test_unreadable_checkpoint(capsys, tmp_path):
    (tmp_path / "manifest.json").write_text("\x00garbage")
    code, _, err = run(capsys, "eval", "--model", str(tmp_path))
    assert code == 2 and err.startswith("error: unreadable checkpoint manifest")


def test_tampered_checkpoint(av_model, capsys, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(av_model, copy)
    blob = bytearray((copy / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(blob))
    code, _, err = run(capsys, "eval", "--model", str(copy))
    assert code == 2 and "does not match its SHA-256: truncated or tampered with" in err


def test_corrupted_cache_is_reported_and_rebuilt(capsys, tmp_path):
    data_dir = tmp_path / "cache"
    assert main(["data", "build", "av-digits", "--data-dir", str(data_dir), "--quiet"]) == 0
    target = next(data_dir.glob("av-digits/*/train.safetensors"))
    target.write_bytes(target.read_bytes()[:-10])
    capsys.readouterr()
    code, _, err = run(capsys, "data", "build", "av-digits", "--data-dir", str(data_dir))
    assert code == 0
    assert "train.safetensors does not match its checksum; rebuilding it" in err


def test_forget_writes_checkpoint_metrics_and_receipt(av_model, capsys, tmp_path):
    out = tmp_path / "ccu"
    code, stdout, _ = run(
        capsys,
        "forget",
        "--model",
        str(av_model),
        "--method",
        "ccu",
        "--forget-fraction",
        "0.1",
        "--out",
        str(out),
        "--set",
        "epochs=1",
        "--reason",
        "test request",
        "--json",
        "--quiet",
    )
    assert code == 0
    receipt = json.loads(stdout)
    assert receipt["request"]["n_ids"] == 60 and receipt["request"]["modalities"] == ["image"]
    assert receipt["request"]["reason"] == "test request" and len(receipt["request"]["ids_sha256"]) == 64
    assert receipt["method"]["name"] == "ccu" and receipt["method"]["config"]["epochs"] == 1
    assert receipt["model_before"]["sha256"] != receipt["model_after"]["sha256"]
    assert {m["name"] for m in receipt["metrics"]} >= {"acc_image", "mia_svc", "relearn_acc_image"}
    assert (out / "receipt.json").is_file() and (out / "metrics.json").is_file()
    code, _, _ = run(capsys, "eval", "--model", str(out), "--quiet")
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--forget-ids", "IDS", "--set", "epochs=1"], "1 id(s) not in dataset 'av-digits/small/train': 'no-such-id'"),
        (["--forget-ids", "EMPTY"], "the forget request is empty: it names no sample"),
        (["--forget-fraction", "0.1", "--set", "lambda_z=1"], "unknown CCUConfig key(s) ['lambda_z']"),
        (["--forget-fraction", "0.1", "--set", "epochs"], "--set expects key=value, got 'epochs'"),
        (["--forget-fraction", "1.5"], "forget fraction must be in (0, 1), got 1.5"),
    ],
)
def test_forget_bad_inputs(av_model, capsys, tmp_path, extra, message):
    (tmp_path / "ids.txt").write_text("no-such-id\n")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    extra = [
        str(tmp_path / "ids.txt") if a == "IDS" else str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in extra
    ]
    code, _, err = run(
        capsys, "forget", "--model", str(av_model), "--method", "ccu", "--out", str(tmp_path / "o"), *extra, "--quiet"
    )
    assert code == 2
    assert err.strip().startswith(f"error: {message}")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def pairs_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "model"
    argv = ["train", "--dataset", "shapes-captions", "--size", "small", "--out", str(out), "--epochs", "1", "--quiet"]
    assert main(argv) == 0
    return out


def test_forget_a_concept_in_a_dual_encoder(pairs_model, capsys, tmp_path):
    out = tmp_path / "cliperase"
    argv = ["--model", str(pairs_model), "--method", "finetune", "--concept", "red circle", "--out", str(out)]
    code, stdout, _ = run(capsys, "forget", *argv, "--set", "epochs=1", "--json", "--quiet")
    assert code == 0
    receipt = json.loads(stdout)
    assert receipt["request"]["concept"] == "red circle" and receipt["request"]["modalities"] == ["image", "text"]
    names = {(m["name"], m["split"]) for m in receipt["metrics"]}
    assert {
        ("mean_recall", "unlearn"),
        ("mean_recall", "test"),
        ("zs_concept", "unlearn"),
        ("mia_svc", "unlearn"),
    } <= names
    before = {(m["name"], m["split"]) for m in receipt["original_metrics"]}
    assert before == names
    code, _, _ = run(capsys, "eval", "--model", str(out), "--quiet")
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concept", "pink circle"], "no caption of 'shapes-captions/small/train' names the concept 'pink circle'"),
        (["--concept", "red circle", "--modalities", "image"], "a dual encoder forgets image-caption pairs whole"),
        (["--concept", "red circle", "--method", "boundary_shrink"], "unlearner 'boundary_shrink' cannot use"),
        (["--concept", " "], "--concept is empty"),
    ],
)
def test_forget_bad_pair_requests(pairs_model, capsys, tmp_path, extra, message):
    method = [] if "--method" in extra else ["--method", "finetune"]
    argv = ["--model", str(pairs_model), *method, "--out", str(tmp_path / "o"), *extra, "--quiet"]
    code, _, err = run(capsys, "forget", *argv)
    assert code == 2
    assert err.strip().startswith(f"error: {message}")
    assert not (tmp_path / "o").exists()


def _walk_options(parser, path=("mmunlearn",)):
    """(command path, option) for every argument of every (sub)command, the subcommand choosers excepted."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk_options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_option_of_every_command_has_help(capsys):
    from mmunlearn.cli import build_parser

    parser = build_parser()
    seen = list(_walk_options(parser))
    assert {cmd for cmd, _ in seen} >= {
        "mmunlearn list", "mmunlearn data build", "mmunlearn data ids", "mmunlearn train", "mmunlearn eval",
        "mmunlearn forget", "mmunlearn protect", "mmunlearn victim", "mmunlearn bench", "mmunlearn report",
        "mmunlearn demo",
    }  # fmt: skip
    missing = [f"{cmd} {'/'.join(a.option_strings) or a.dest}" for cmd, a in seen if not (a.help or "").strip()]
    assert missing == []
    for argv in (["train"], ["data", "ids"], ["forget"], ["protect"], ["demo"], ["report"]):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])  # formats every help string: a stray % would raise here
        assert done.value.code == 0
    capsys.readouterr()


def test_help_lists_the_registered_names(capsys):
    from mmunlearn.data import DATASETS, SIZES
    from mmunlearn.protectors import PROTECTORS
    from mmunlearn.unlearn import UNLEARNERS

    def help_of(*argv):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        return " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # undo argparse's line wrapping

    train = help_of("train")
    assert all(name in train for name in DATASETS.names()) and f"dataset size: {', '.join(SIZES)}" in train
    forget = help_of("forget")
    assert all(name in forget for name in UNLEARNERS.names())
    protect = help_of("protect")
    assert all(name in protect for name in PROTECTORS.names())
    assert "shapes-captions" in protect and "av-digits" not in protect  # caption sets only
    assert all(name in help_of("data", "ids") for name in DATASETS.names())


def test_data_ids_lists_a_split_one_id_per_line_for_forget_ids(av_model, capsys, tmp_path):
    from mmunlearn.data import load_dataset

    splits = load_dataset("av-digits", "small", 0)
    code, out, _ = run(capsys, "data", "ids", "av-digits", "--quiet")
    assert code == 0 and out.splitlines() == splits.train.ids and len(splits.train.ids) == 600
    code, val, _ = run(capsys, "data", "ids", "av-digits", "--split", "val", "--quiet")
    assert code == 0 and val.splitlines() == splits.val.ids
    # three lines of the output, as a user would cut them, make a --forget-ids file
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(out.splitlines(keepends=True)[:3]))
    code, stdout, _ = run(
        capsys, "forget", "--model", str(av_model), "--method", "finetune", "--forget-ids", str(ids),
        "--out", str(tmp_path / "ft"), "--set", "epochs=1", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0 and json.loads(stdout)["request"]["n_ids"] == 3


def test_data_ids_groups_and_json(capsys):
    from collections import Counter

    from mmunlearn.data import load_dataset

    train = load_dataset("av-digits", "small", 0).train
    code, out, _ = run(capsys, "data", "ids", "av-digits", "--json", "--quiet")
    assert code == 0
    record = json.loads(out)
    assert record["dataset"] == "av-digits" and record["split"] == "train"
    assert record["ids"] == train.ids
    assert set(record["groups"]) == set(train.groups) and "image_identity" in record["groups"]
    for kind, counts in record["groups"].items():
        assert counts == dict(Counter(train.groups[kind]))
        assert sum(counts.values()) == len(train)
    code, out, _ = run(capsys, "data", "ids", "av-digits", "--groups", "--quiet")
    assert code == 0 and "| kind" in out and "samples" in out
    kind, counts = next(iter(record["groups"].items()))
    name, n = next(iter(counts.items()))
    row = next(line for line in out.splitlines() if f" {name} " in line)
    assert kind in row and row.split("|")[3].strip() == str(n)
    assert "avd-train-000000" not in out


def test_data_ids_bad_name(capsys):
    code, _, err = run(capsys, "data", "ids", "nope", "--quiet")
    assert code == 2
    assert (
        err.strip()
        == "error: unknown dataset 'nope'; known datasets: av-digits, av-digits-video, emoji-captions, scenes-captions, shapes-captions"
    )
