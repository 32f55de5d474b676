"""Datasets on disk in published layouts: parsing, pixels and sounds, the cache, and the error messages."""

from __future__ import annotations

import json
import logging
import os
from math import gcd

import numpy as np
import pytest
import soundfile
import torch
from layout_fixtures import (
    CLIPS,
    make_av_csv,
    make_av_frames,
    make_caption_csv,
    make_coco,
    make_imagefolder,
    make_karpathy,
    write_image,
)
from PIL import Image
from scipy.signal import resample_poly

from mmunlearn.data import LAYOUTS, load_dataset, load_layout
from mmunlearn.data import audio as audio_mod
from mmunlearn.data.layouts import decode
from mmunlearn.data.layouts.cache import LIMIT_ENV
from mmunlearn.errors import DataError
from mmunlearn.registry import UnknownNameError


def all_of(d):
    return {s: d.split(s) for s in ("train", "val", "test")}


def reference_pixels(path, size):
    """Direct Pillow decode + the documented resize rule, written independently of the loader."""
    img = Image.open(path)
    if img.mode.startswith("I;16"):
        a = np.clip(np.round(np.asarray(img, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
        img = Image.fromarray(a).convert("RGB")
    else:
        img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    out = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return torch.from_numpy(np.asarray(out).transpose(2, 0, 1).copy())


def test_registry_lists_the_layouts():
    assert LAYOUTS.names() == ["av-csv", "av-frames", "coco", "csv", "imagefolder", "karpathy"]
    with pytest.raises(UnknownNameError, match="known layouts: av-csv"):
        load_layout(".", "nope")


def test_karpathy_splits_ids_captions_groups(tmp_path):
    root = make_karpathy(tmp_path / "f8k")
    d = load_layout(root / "dataset_flickr8k.json", "karpathy", data_dir=tmp_path / "c")
    assert d.train.ids[:3] == [
        "Flicker8k_Dataset/im0.png#0",
        "Flicker8k_Dataset/im0.png#1",
        "Flicker8k_Dataset/im1.jpg#0",
    ]
    assert {g for g in d.train.groups["image"]} == {f"Flicker8k_Dataset/{n}" for n in ("im0.png", "im1.jpg", "im2.png")}
    assert d.val.groups["image"] == ["Flicker8k_Dataset/im3.png"] * 3 and len(d.test) == 2 + 3  # restval is train
    assert d.train.captions[2] == "Picture 1, caption number 0: a thing!"
    tok_row = d.train.inputs["text"][2]
    assert " ".join(d.vocab[i] for i in tok_row.tolist() if i) == "picture 1 caption number 0 a thing"
    assert d.text_len == 7 + 8 and d.train.inputs["image"].shape == (7, 3, 32, 32) and d.train.labels is None
    # the folder works as well as the file, and load_dataset(path, layout=...) is the same loader
    same = load_dataset(str(root), layout="karpathy", data_dir=tmp_path / "c")
    assert same.train.ids == d.train.ids and torch.equal(same.test.inputs["image"], d.test.inputs["image"])
    assert same.name == str(root.resolve()) and same.size == "full" and same.meta["layout"] == "karpathy"


def test_coco_val2017_split_into_val_and_test_by_image(tmp_path):
    d = load_layout(make_coco(tmp_path / "coco"), "coco", seed=3, data_dir=tmp_path / "c")
    parts = all_of(d)
    assert {g.split("/")[0] for g in parts["train"].groups["image"]} == {"train2017"}
    val_imgs, test_imgs = set(parts["val"].groups["image"]), set(parts["test"].groups["image"])
    assert not val_imgs & test_imgs and len(val_imgs | test_imgs) == 4 and len(val_imgs) == 2
    assert all(g.startswith("val2017/") for g in val_imgs | test_imgs)
    # captions of one image are ordered by annotation id (the file lists them the other way round)
    assert parts["train"].captions[:2] == [
        "Picture 0, caption number 0: a thing!",
        "Picture 0, caption number 1: a thing!",
    ]
    assert "half val, half test" in d.meta["notes"]["test"]


def test_imagefolder_split_folders_and_seeded(tmp_path):
    d = load_layout(make_imagefolder(tmp_path / "hf"), "imagefolder", data_dir=tmp_path / "c")
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [4, 1, 2]
    assert d.val.ids == ["validation/img4.jpg#0"] and d.meta["splits"] == "from the files"
    flat = load_layout(make_imagefolder(tmp_path / "hf2", split_folders=False), "imagefolder", data_dir=tmp_path / "c")
    assert [len(flat.split(s)) for s in ("train", "val", "test")] == [8, 1, 1]
    again = load_layout(tmp_path / "hf2", "imagefolder", data_dir=tmp_path / "c")
    other = load_layout(tmp_path / "hf2", "imagefolder", seed=1, data_dir=tmp_path / "c")
    assert again.test.ids == flat.test.ids and again.val.ids == flat.val.ids
    assert (other.test.ids, other.val.ids) != (flat.test.ids, flat.val.ids)


@pytest.mark.parametrize("jsonl", [False, True])
def test_csv_keeps_the_captions_of_an_image_together(tmp_path, jsonl):
    d = load_layout(make_caption_csv(tmp_path / "t", jsonl), "csv", data_dir=tmp_path / "c")
    split_of = {g: s for s in ("train", "val", "test") for g in d.split(s).groups["image"]}
    assert len(split_of) == 10 and sum(len(d.split(s)) for s in ("train", "val", "test")) == 20
    for s in ("train", "val", "test"):
        assert all(split_of[g] == s for g in d.split(s).groups["image"])


def test_av_frames_labels_groups_video_and_audio(tmp_path):
    root = make_av_frames(tmp_path / "ave")
    d = load_layout(root, "av-frames", frames=3, data_dir=tmp_path / "c")
    assert d.meta["classes"] == ["cat", "dog"] and d.train.num_classes == 2
    label = {c: lab for c, lab, _ in CLIPS}
    speaker = {c: g for c, _, g in CLIPS}
    ids = [i for s in ("train", "val", "test") for i in d.split(s).ids]
    assert sorted(ids) == sorted(label)
    for s in ("train", "val", "test"):
        ds = d.split(s)
        assert [d.meta["classes"][i] for i in ds.labels.tolist()] == [label[i] for i in ds.ids]
        assert ds.groups["identity"] == [speaker[i] for i in ds.ids]
        assert ds.inputs["video"].shape[1:] == (3, 3, 32, 32)  # uint8 (N, T, C, H, W) made float by the dataset
        assert ds.inputs["audio"].shape[1:] == (40, 64) and ds.inputs["audio"].dtype == torch.float32
    # test holds out whole identities
    assert not set(d.test.groups["identity"]) & set(d.train.groups["identity"] + d.val.groups["identity"])
    # image = middle frame, video = evenly sampled frames (clip_b has 6 frames: middle 4th, sampled 2nd/4th/5th... )
    ds, pos = next(
        (d.split(s), d.split(s).ids.index("clip_b")) for s in ("train", "val", "test") if "clip_b" in d.split(s)
    )
    frames = sorted((root / "frames" / "clip_b").iterdir(), key=lambda p: int(p.stem.split("_")[1]))
    assert len(frames) == 6
    assert torch.equal((ds.inputs["image"][pos] * 255).round().to(torch.uint8), reference_pixels(frames[3], 32))
    for t, i in enumerate([1, 3, 5]):
        assert torch.equal((ds.inputs["video"][pos, t] * 255).round().to(torch.uint8), reference_pixels(frames[i], 32))


def test_av_csv_and_sound_features_match_a_direct_computation(tmp_path):
    table = make_av_csv(tmp_path / "pairs")
    d = load_layout(table, "av-csv", data_dir=tmp_path / "c")
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [3, 2, 2] and "video" not in d.train.inputs
    for s in ("train", "val", "test"):
        ds = d.split(s)
        for pos, sid in enumerate(ds.ids):
            wav = tmp_path / "pairs" / "snd" / f"{sid.split('/')[-1].split('.')[0]}.wav"
            data, rate = soundfile.read(wav, always_2d=True)
            g = gcd(rate, 22050)
            mono = resample_poly(data.mean(axis=1), 22050 // g, rate // g)
            start = (len(mono) - 22050) // 2
            want = audio_mod.log_mel(torch.from_numpy(mono[start : start + 22050]), 22050, 512, 345, 40, 20.0, 8000.0)
            assert torch.allclose(ds.inputs["audio"][pos], want, atol=1e-5)
            assert torch.equal(
                (ds.inputs["image"][pos] * 255).round().to(torch.uint8), reference_pixels(tmp_path / "pairs" / sid, 32)
            )


def test_short_sound_is_centred_and_zero_padded():
    out = decode.centre_clip(np.ones(4), 8)
    assert out.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


@pytest.mark.parametrize("size", [32, 7])
def test_pixels_equal_a_direct_pillow_decode_for_every_mode(tmp_path, size):
    root = make_caption_csv(tmp_path / "t")
    d = load_layout(root, "csv", image_size=size, data_dir=tmp_path / "c")
    modes = set()
    for s in ("train", "val", "test"):
        ds = d.split(s)
        for pos, rel in enumerate(ds.groups["image"]):
            modes.add(Image.open(tmp_path / "t" / rel).mode)
            got = (ds.inputs["image"][pos] * 255).round().to(torch.uint8)
            assert torch.equal(got, reference_pixels(tmp_path / "t" / rel, size)), rel
    assert {"RGB", "L", "P", "RGBA", "CMYK", "I;16", "LA"} <= modes


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
    root = make_av_frames(tmp_path / "ave")
    first = load_layout(root, "av-frames", data_dir=tmp_path / "c")

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "decode_image", boom)
    monkeypatch.setattr("mmunlearn.data.layouts.cache.decode_image", boom)
    monkeypatch.setattr("mmunlearn.data.layouts.cache.decode_sound", boom)
    second = load_layout(root, "av-frames", data_dir=tmp_path / "c")
    assert second.path == first.path
    for s in ("train", "val", "test"):
        a, b = first.split(s), second.split(s)
        assert a.ids == b.ids and all(torch.equal(a.inputs[m], b.inputs[m]) for m in a.inputs)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    root = make_karpathy(tmp_path / "f8k")
    ref = load_layout(root, "karpathy", data_dir=tmp_path / "c")
    target = ref.path / "images.npy"
    if damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[-5] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "delete":
        target.unlink()
    else:
        (ref.path / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        again = load_layout(root, "karpathy", data_dir=tmp_path / "c")
    assert "cannot be used" in caplog.text and "rebuilding" in caplog.text
    assert torch.equal(again.train.inputs["image"], ref.train.inputs["image"])


def test_changed_source_file_rebuilds_the_cache(tmp_path, caplog):
    root = make_karpathy(tmp_path / "f8k")
    ref = load_layout(root, "karpathy", data_dir=tmp_path / "c")
    img = root / "Flicker8k_Dataset" / "im0.png"
    Image.new("RGB", (5, 5), (255, 0, 0)).save(img)
    os.utime(img, ns=(1, 1))
    with caplog.at_level(logging.WARNING):
        again = load_layout(root, "karpathy", data_dir=tmp_path / "c")
    assert "source files changed" in caplog.text
    assert again.train.inputs["image"][0, 0].eq(1).all() and not torch.equal(
        again.train.inputs["image"], ref.train.inputs["image"]
    )


def test_the_cache_root_is_bounded(tmp_path, monkeypatch):
    a = load_layout(make_karpathy(tmp_path / "a"), "karpathy", data_dir=tmp_path / "c")
    monkeypatch.setenv(LIMIT_ENV, "0.00001")  # 10 kB: room for one of these caches only
    b = load_layout(make_coco(tmp_path / "b"), "coco", data_dir=tmp_path / "c")
    assert not a.path.exists() and b.path.exists()
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(DataError, match=LIMIT_ENV):
        load_layout(tmp_path / "a", "karpathy", data_dir=tmp_path / "c")


# -- errors ---------------------------------------------------------------------------------------------
def test_missing_json_key_names_the_file_and_the_entry(tmp_path):
    root = make_karpathy(tmp_path / "f8k")
    data = json.loads((root / "dataset_flickr8k.json").read_text())
    del data["images"][3]["sentences"]
    (root / "dataset_flickr8k.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"dataset_flickr8k\.json: images\[3\] has no 'sentences' list"):
        load_layout(root, "karpathy", data_dir=tmp_path / "c")
    (root / "dataset_flickr8k.json").write_text("{oops")
    with pytest.raises(DataError, match=r"dataset_flickr8k\.json: not valid JSON"):
        load_layout(root, "karpathy", data_dir=tmp_path / "c")


def test_missing_annotation_files_and_columns(tmp_path):
    with pytest.raises(
        DataError, match=r"captions_train2017\.json: not found \(expected the COCO train captions file\)"
    ):
        load_layout(tmp_path, "coco", data_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"no metadata\.jsonl or metadata\.csv"):
        load_layout(tmp_path, "imagefolder", data_dir=tmp_path / "c")
    (tmp_path / "t.csv").write_text("image,words\na.png,hello\n")
    with pytest.raises(DataError, match=r"t\.csv: needs a column named 'caption' or 'text' \(columns: image, words\)"):
        load_layout(tmp_path / "t.csv", "csv", data_dir=tmp_path / "c")
    with pytest.raises(DataError, match="expected one label CSV"):
        load_layout(make_karpathy(tmp_path / "k"), "av-frames", data_dir=tmp_path / "c")


def test_missing_image_file_is_named(tmp_path):
    root = make_karpathy(tmp_path / "f8k")
    (root / "Flicker8k_Dataset" / "im4.jpg").unlink()
    with pytest.raises(DataError, match=r"Flicker8k_Dataset/im4\.jpg: image file not found"):
        load_layout(root, "karpathy", data_dir=tmp_path / "c")


def test_unreadable_image_fails_or_is_skipped(tmp_path, caplog):
    root = make_karpathy(tmp_path / "f8k")
    bad = root / "Flicker8k_Dataset" / "im2.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=rf"{bad}: unreadable image"):
        load_layout(root, "karpathy", data_dir=tmp_path / "c")
    with caplog.at_level(logging.WARNING):
        d = load_layout(root, "karpathy", skip_bad=True, data_dir=tmp_path / "c")
    assert (
        d.meta["skipped"] == [str(bad.resolve())] and "im2.png" in caplog.text and "skipped 1 bad file" in caplog.text
    )
    assert "Flicker8k_Dataset/im2.png" not in d.train.groups["image"] and len(d.train) == 7 - 2
    # a cache built with skips still refuses the bad file without skip_bad
    with pytest.raises(DataError, match=r"im2\.png: unreadable image"):
        load_layout(root, "karpathy", data_dir=tmp_path / "c")


def test_unreadable_wav_and_empty_frame_folder_are_skipped(tmp_path):
    root = make_av_frames(tmp_path / "ave")
    (root / "audio" / "clip_c.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(DataError, match=r"clip_c\.wav: unreadable sound file"):
        load_layout(root, "av-frames", data_dir=tmp_path / "c")
    for f in (root / "frames" / "clip_a").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"frames/clip_a: frame folder is missing or holds no image"):
        load_layout(root, "av-frames", data_dir=tmp_path / "c")
    d = load_layout(root, "av-frames", skip_bad=True, data_dir=tmp_path / "c")
    ids = {i for s in ("train", "val", "test") for i in d.split(s).ids}
    assert ids == {c for c, _, _ in CLIPS} - {"clip_c", "clip_a"} and len(d.meta["skipped"]) == 2  # the wav, the folder


def test_path_outside_the_root_is_refused(tmp_path):
    write_image(tmp_path / "x", 0)
    (tmp_path / "t.csv").write_text("image,caption\n../x.png,hi\n")
    with pytest.raises(DataError, match="expected a path inside"):
        load_layout(tmp_path / "t.csv", "csv", data_dir=tmp_path / "c")


def test_av_frames_per_split_csvs_without_header(tmp_path):
    root = make_av_frames(tmp_path / "crema")
    (root / "labels.csv").unlink()
    (root / "train.csv").write_text("".join(f"{c},{lab}\n" for c, lab, _ in CLIPS[:5]))
    (root / "test.csv").write_text("".join(f"{c},{lab}\n" for c, lab, _ in CLIPS[5:]))
    d = load_layout(root, "av-frames", data_dir=tmp_path / "c")
    assert d.test.ids == ["clip_f", "clip_g"] and len(d.train) + len(d.val) == 5 and len(d.val) == 1
    assert "identity" not in d.train.groups and "val drawn from train" in d.meta["splits"]


def test_imagefolder_root_metadata_with_split_prefixes(tmp_path):
    rows = []
    for k, folder in enumerate(["train", "train", "train", "test", "validation"]):
        p = write_image(tmp_path / "hf" / folder / f"i{k}", k)
        rows.append({"file_name": p.relative_to(tmp_path / "hf").as_posix(), "text": ["one caption", "another one"]})
    (tmp_path / "hf" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = load_layout(tmp_path / "hf", "imagefolder", data_dir=tmp_path / "c")
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    assert d.val.ids == ["validation/i4.jpg#0", "validation/i4.jpg#1"] and d.val.captions == [
        "one caption",
        "another one",
    ]


def test_meta_is_json_ready_and_reloads_the_same_dataset(tmp_path):
    d = load_layout(make_av_frames(tmp_path / "ave"), "av-frames", seed=2, frames=2, data_dir=tmp_path / "c")
    meta = json.loads(json.dumps(d.meta))
    assert meta["options"] == {"seed": 2, "image_size": 32, "frames": 2, "clip_seconds": 1.0, "skip_bad": False}
    again = load_layout(meta["source"], meta["layout"], **meta["options"], data_dir=tmp_path / "c")
    assert again.path == d.path and again.name == d.name == meta["source"] and again.seed == 2
    assert all(again.split(s).ids == d.split(s).ids for s in ("train", "val", "test"))
