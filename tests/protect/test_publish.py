"""Publishing a protection: one noise per image, export in each caption layout, verify, round trip."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from caption_toy import make_captions
from PIL import Image

from data.layout_fixtures import make_caption_csv, make_coco, make_imagefolder, make_karpathy
from mmunlearn.cli.protect import add_commands as add_protect
from mmunlearn.cli.verify import add_commands as add_verify
from mmunlearn.data import load_dataset
from mmunlearn.errors import CheckpointError
from mmunlearn.protection import protect_builtin
from mmunlearn.protectors import PROTECTORS
from mmunlearn.protectors.grouping import image_leaders
from mmunlearn.publish import export_protected, load_export, protected_pixels, read_export_manifest, verify_export

TINY = {
    "random_noise": {},
    "random_trigger": {},
    "em": {"outer_iters": 1, "surrogate_steps": 1, "pgd_steps": 2, "batch_size": 4, "stop_accuracy": None},
    "mem": {"outer_iters": 1, "trigger_iters": 1, "surrogate_steps": 1, "pgd_steps": 2, "hotflip_candidates": 2,
            "batch_size": 4},
}  # fmt: skip

LAYOUTS = {
    "karpathy": (make_karpathy, "karpathy", ""),
    "coco": (make_coco, "coco", ""),
    "imagefolder-splits": (make_imagefolder, "imagefolder", ""),
    "imagefolder-root": (lambda root: make_imagefolder(root, split_folders=False), "imagefolder", ""),
    "csv": (make_caption_csv, "csv", "captions.csv"),
    "jsonl": (lambda root: make_caption_csv(root, jsonl=True), "csv", "captions.jsonl"),
}


def protect(tmp_path: Path, case: str, method: str):
    """Write the fixture of ``case``, protect its training split with ``method`` (tiny settings)."""
    make, layout, _ = LAYOUTS[case]
    made = make(tmp_path / "src")
    cache = tmp_path / "cache"
    protected = protect_builtin(str(made), method, None, layout=layout, data_dir=cache, progress=False,
                                overrides=TINY[method])  # fmt: skip
    return made, layout, cache, protected


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mmunlearn")
    sub = parser.add_subparsers(dest="command", required=True)
    add_protect(sub)
    add_verify(sub)
    args = parser.parse_args(list(argv))
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- one noise per image --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["random_noise", "em", "mem", "random_trigger"])
def test_the_captions_of_one_image_share_one_noise_and_trigger(tmp_path, method):
    _, _, cache, protected = protect(tmp_path, "karpathy", method)
    train = load_dataset(str(tmp_path / "src"), layout="karpathy", data_dir=cache).train
    leaders = image_leaders(train)
    assert leaders is not None and len(set(leaders.tolist())) < len(train)  # 2-3 captions per image
    pos = train.positions(protected.ids)
    for tensor in (protected.noise, protected.triggers):
        if tensor is not None:
            by_row = torch.empty_like(tensor)
            by_row[pos] = tensor
            assert torch.equal(by_row, by_row[leaders])
    if protected.noise is not None and method == "em":
        assert int(protected.noise.abs().max()) > 0


def test_grouped_min_min_ties_rows_within_the_budget():
    data = make_captions(n=12)
    data.groups["image"] = [f"img{i // 3}" for i in range(12)]
    p = PROTECTORS.create("mem", progress=False, **{**TINY["mem"], "epsilon": 4 / 255}).protect(data)
    assert p.noise is not None and p.triggers is not None
    for first in range(0, 12, 3):
        assert all(torch.equal(p.noise[first], p.noise[first + j]) for j in (1, 2))
        assert all(torch.equal(p.triggers[first], p.triggers[first + j]) for j in (1, 2))
    assert int(p.noise.abs().max()) <= 4


def test_sets_without_an_image_group_are_untouched():
    data = make_captions(n=12)
    a = PROTECTORS.create("random_noise").protect(data)
    data.groups["image"] = [f"img{i}" for i in range(12)]  # one caption per image: nothing to tie
    b = PROTECTORS.create("random_noise").protect(data)
    assert image_leaders(data) is None and torch.equal(a.noise, b.noise)


# -- export, verify, round trip -------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_export_verifies_and_round_trips(tmp_path, case):
    made, layout, cache, protected = protect(tmp_path, case, "mem")
    out = export_protected(protected, tmp_path / "pub", data_dir=cache)
    manifest = read_export_manifest(out)
    assert manifest["layout"] == layout
    checks = verify_export(made, out, data_dir=cache)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert {c.name for c in checks} >= {"files", "checksums", "samples", "budget", "unchanged", "triggers"}

    # the published training images are PNGs at the training resolution, in the input's schema
    pngs = [pub for _, pub, prot in manifest["images"] if prot]
    assert pngs and all(p.endswith(".png") and Image.open(out / p).size == (32, 32) for p in pngs)

    # round trip: load_dataset(DIR, layout=...) gives the in-memory protected training set
    splits = load_dataset(str(made), layout=layout, data_dir=cache)
    mine = protected.apply(splits.train)
    back = load_dataset(str(out / manifest["load_path"]), layout=layout, data_dir=cache)
    assert back.vocab == splits.vocab
    published = {o: p for o, p, _, _ in manifest["samples"]}
    rows = back.train.positions([published[i] for i in mine.ids])
    assert len(back.train) == len(mine)
    as_u8 = lambda x: (x * 255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(as_u8(back.train.inputs["image"][rows]), as_u8(mine.inputs["image"]))
    # bit-identical to the protected pixels on the 1/255 grid; apply()'s float sum x/255 + n/255 may differ by 1 ulp
    exact = torch.from_numpy(protected_pixels(protected, splits.train)).float() / 255
    stored = back.train.inputs["image"][back.train.positions([published[i] for i in protected.ids])]
    assert torch.equal(stored, exact)
    assert torch.allclose(back.train.inputs["image"][rows], mine.inputs["image"], atol=1e-7, rtol=0)
    width = mine.inputs["text"].shape[1]
    text = back.train.inputs["text"][rows]
    assert torch.equal(text[:, :width], mine.inputs["text"]) and not text[:, width:].any()
    words = lambda c: " ".join(c.split())  # noqa: E731  (the readers strip cells; the words are what counts)
    back_caps = back.train.captions or []
    assert [words(back_caps[r]) for r in rows.tolist()] == [words(c) for c in mine.captions or []]
    for split in ("val", "test"):  # copied through: the same images and captions
        a, b = splits.split(split), back.split(split)
        assert torch.equal(a.inputs["image"], b.inputs["image"][b.positions([published[i] for i in a.ids])])


def test_export_of_em_on_coco_and_random_noise_on_csv_verify(tmp_path):
    for case, method in (("coco", "em"), ("csv", "random_noise")):
        made, _, cache, protected = protect(tmp_path / case, case, method)
        out = export_protected(protected, tmp_path / case / "pub", data_dir=cache)
        assert all(c.ok for c in verify_export(made, out, data_dir=cache))


def test_val_and_test_entries_are_copied_through(tmp_path):
    made, _, cache, protected = protect(tmp_path / "f", "imagefolder-splits", "random_noise")
    out = export_protected(protected, tmp_path / "f" / "pub", data_dir=cache)
    copied = [p.relative_to(made).as_posix() for d in ("validation", "test") for p in (made / d).iterdir()]
    assert len(copied) == 5  # two tables, three images
    for rel in copied:
        assert (out / rel).read_bytes() == (made / rel).read_bytes(), rel
    assert (out / "train" / "metadata.jsonl").is_file() and (out / "train" / "img1.png").is_file()

    made, _, cache, protected = protect(tmp_path / "k", "karpathy", "random_trigger")
    out = export_protected(protected, tmp_path / "k" / "pub", data_dir=cache)
    before = json.loads((made / "dataset_flickr8k.json").read_text())["images"]
    after = json.loads((out / "dataset_flickr8k.json").read_text())["images"]
    assert [e for e in after if e["split"] in ("val", "test")] == [e for e in before if e["split"] in ("val", "test")]
    for b, a in zip(before, after, strict=True):
        if b["split"] in ("train", "restval"):
            assert a["filename"].endswith(".png") and a["split"] == b["split"]
            raws = [s["raw"] for s in a["sentences"]]
            assert len({r.split(" Picture")[0] for r in raws}) == 1  # one trigger per image
            assert all(r.endswith(s["raw"]) for r, s in zip(raws, b["sentences"], strict=True))


# -- tampering ------------------------------------------------------------------------------------------
@pytest.fixture
def published(tmp_path):
    made, _, cache, protected = protect(tmp_path, "karpathy", "mem")
    out = export_protected(protected, tmp_path / "pub", data_dir=cache)
    return made, out, cache


def verdicts(made, out, cache) -> dict[str, str | None]:
    """Check name -> None when it passed, else its detail."""
    return {c.name: None if c.ok else c.detail for c in verify_export(made, out, data_dir=cache)}


def test_a_pixel_beyond_the_budget_fails_and_names_the_file(published, capsys):
    made, out, cache = published
    manifest = read_export_manifest(out)
    image = next(pub for _, pub, prot in manifest["images"] if prot)
    pixels = np.array(Image.open(out / image))
    pixels[3, 4, 1] = 0 if pixels[3, 4, 1] >= 128 else 255
    Image.fromarray(pixels).save(out / image)
    v = verdicts(made, out, cache)
    assert v["budget"] is not None and image in v["budget"]
    assert v["checksums"] is not None and image in v["checksums"]
    code, text, err = run_cli(capsys, "verify-protection", "--original", str(made), "--protected", str(out),
                              "--data-dir", str(cache))  # fmt: skip
    assert code == 2 and "FAILED" in text and image in text and "budget" in err


def test_a_dropped_trigger_fails_and_names_the_caption(published):
    made, out, cache = published
    manifest = read_export_manifest(out)
    _, pub, _, trigger = next(s for s in manifest["samples"] if s[3])
    file = out / "dataset_flickr8k.json"
    text = file.read_text()
    assert f'"{trigger} ' in text
    file.write_text(text.replace(f'"{trigger} ', '"', 1))
    v = verdicts(made, out, cache)
    assert v["triggers"] is not None and "dataset_flickr8k.json" in v["triggers"] and pub in v["triggers"]
    assert v["checksums"] is not None and "dataset_flickr8k.json" in v["checksums"]


def test_a_deleted_or_extra_file_fails_and_names_it(published, capsys):
    made, out, cache = published
    manifest = read_export_manifest(out)
    image = next(pub for _, pub, prot in manifest["images"] if not prot)
    (out / image).unlink()
    (out / "stray.txt").write_text("x")
    v = verdicts(made, out, cache)
    assert v["files"] is not None and image in v["files"] and "stray.txt" in v["files"]
    assert v["load"] is not None and Path(image).name in v["load"]
    code, _, _ = run_cli(capsys, "verify-protection", "--original", str(made), "--protected", str(out),
                         "--data-dir", str(cache), "--json")  # fmt: skip
    assert code == 2


# -- the commands ---------------------------------------------------------------------------------------
def test_protect_export_then_verify_protection(tmp_path, capsys):
    src = make_karpathy(tmp_path / "src")
    cache, out = tmp_path / "cache", tmp_path / "pub"
    code, text, _ = run_cli(capsys, "protect", "--dataset", str(src), "--layout", "karpathy", "--method",
                            "random_noise", "--out", str(tmp_path / "prot"), "--export", str(out), "--quiet",
                            "--data-dir", str(cache))  # fmt: skip
    assert code == 0 and "exported" in text and (out / "manifest.json").is_file()
    code, text, _ = run_cli(capsys, "verify-protection", "--original", str(src), "--layout", "karpathy",
                            "--protected", str(out), "--data-dir", str(cache))  # fmt: skip
    assert code == 0 and text.count("ok ") >= 7 and "verified" in text
    code, text, _ = run_cli(capsys, "verify-protection", "--original", str(src), "--protected", str(out),
                            "--data-dir", str(cache), "--epsilon", "2/255")  # fmt: skip
    assert code == 2 and "over 2/255" in text
    with pytest.raises(CheckpointError, match="not an empty folder"):
        run_cli(capsys, "protect", "--dataset", str(src), "--layout", "karpathy", "--method", "random_noise",
                "--out", str(tmp_path / "prot2"), "--export", str(out), "--quiet", "--data-dir", str(cache))  # fmt: skip


def test_a_builtin_set_is_exported_as_imagefolder(tmp_path, shapes_small):
    data = shapes_small
    protected = PROTECTORS.create("random_trigger").protect(data.train)
    protected.source = {**protected.source, "dataset": "shapes-captions", "size": "small", "data_seed": 0,
                        "split": "train"}  # fmt: skip
    out = export_protected(protected, tmp_path / "pub", data)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "imagefolder" and (out / "train" / "metadata.jsonl").is_file()
    cache = tmp_path / "cache"  # the built-in set read from its cache, the export decoded beside it
    cache.mkdir()
    (cache / "shapes-captions").symlink_to(data.path.parent.resolve(), target_is_directory=True)
    checks = verify_export("shapes-captions", out, data_dir=cache)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    back = load_export(out, data_dir=cache)
    assert len(back.train) == len(data.train) and back.vocab == data.vocab
