"""Tiny datasets written in each published layout, for the layout tests (made in milliseconds, no download)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

# (mode, width, height, suffix): every mode Pillow may hand a loader, in odd sizes and both formats
MODES = [
    ("RGB", 20, 12, ".png"),
    ("L", 40, 40, ".jpg"),
    ("P", 9, 17, ".png"),
    ("RGBA", 33, 21, ".png"),
    ("CMYK", 16, 30, ".jpg"),
    ("I;16", 18, 18, ".png"),
    ("LA", 25, 10, ".png"),
]


def write_image(path: Path, k: int) -> Path:
    """A small image of mode/size ``MODES[k % len(MODES)]`` with seeded content; returns its path."""
    mode, w, h, suffix = MODES[k % len(MODES)]
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(k)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)
    img.save(path)
    return path


def write_wav(path: Path, rate: int, channels: int, seconds: float, k: int) -> Path:
    """A noisy tone of ``seconds`` at ``rate`` Hz with ``channels`` channels (16-bit PCM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * k) * t)
    noise = np.random.default_rng(k).normal(0, 0.02, (len(t), channels))
    soundfile.write(path, tone[:, None] + noise, rate, subtype="PCM_16")
    return path


def captions_of(k: int, n: int) -> list[str]:
    return [f"Picture {k}, caption number {j}: a thing!" for j in range(n)]


def make_karpathy(root: Path, folder: str = "Flicker8k_Dataset") -> Path:
    """``dataset_flickr8k.json`` + its image folder; 6 images of 2-3 captions, one of them ``restval``."""
    splits = ["train", "restval", "train", "val", "test", "test"]
    images = []
    for k, split in enumerate(splits):
        p = write_image(root / folder / f"im{k}", k)
        caps = captions_of(k, 2 + k % 2)
        images.append({"filename": p.name, "imgid": k, "split": split, "sentences": [{"raw": c} for c in caps]})
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    return root


def make_coco(root: Path) -> Path:
    """``annotations/captions_{train,val}2017.json`` with ``train2017/`` (3 images) and ``val2017/`` (4)."""
    ann_id = 100
    for part, n, first in (("train", 3, 0), ("val", 4, 3)):
        images, anns = [], []
        for k in range(first, first + n):
            p = write_image(root / f"{part}2017" / f"{k:012d}", k)
            images.append({"id": k, "file_name": p.name, "width": 1, "height": 1})
            for c in reversed(captions_of(k, 2)):  # annotation order differs from id order
                ann_id -= 1
                anns.append({"id": ann_id, "image_id": k, "caption": c})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{part}2017.json").write_text(
            json.dumps({"images": images, "annotations": anns})
        )
    return root


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def make_imagefolder(root: Path, split_folders: bool = True) -> Path:
    """Hugging Face imagefolder: per-split metadata (jsonl and csv), or one root ``metadata.csv``."""
    if split_folders:
        for folder, ks, kind in (
            ("train", [0, 1, 2, 3], "jsonl"),
            ("validation", [4], "csv"),
            ("test", [5, 6], "jsonl"),
        ):
            rows = [
                {"file_name": write_image(root / folder / f"img{k}", k).name, "text": captions_of(k, 1)[0]} for k in ks
            ]
            if kind == "csv":
                write_csv(
                    root / folder / "metadata.csv", ["file_name", "text"], [[r["file_name"], r["text"]] for r in rows]
                )
            else:
                write_jsonl(root / folder / "metadata.jsonl", rows)
    else:
        rows = [
            [write_image(root / "pics" / f"img{k}", k).relative_to(root).as_posix(), captions_of(k, 1)[0]]
            for k in range(10)
        ]
        write_csv(root / "metadata.csv", ["file_name", "caption"], rows)
    return root


def make_caption_csv(root: Path, jsonl: bool = False) -> Path:
    """``captions.csv`` (or ``.jsonl``) of image,caption with 10 images of 2 captions; returns the file."""
    rows = [
        [write_image(root / "img" / f"p{k}", k).relative_to(root).as_posix(), c]
        for k in range(10)
        for c in captions_of(k, 2)
    ]
    if jsonl:
        write_jsonl(root / "captions.jsonl", [{"image": i, "caption": c} for i, c in rows])
        return root / "captions.jsonl"
    write_csv(root / "captions.csv", ["image", "caption"], rows)
    return root / "captions.csv"


CLIPS = [("clip_a", "dog", "spk1"), ("clip_b", "cat", "spk1"), ("clip_c", "dog", "spk2"), ("clip_d", "cat", "spk2"),
         ("clip_e", "dog", "spk3"), ("clip_f", "cat", "spk3"), ("clip_g", "dog", "spk4")]  # fmt: skip


def make_av_frames(root: Path, n_frames: int = 5) -> Path:
    """``frames/<clip>/frame_<i>.jpg``, ``audio/<clip>.wav`` (8 kHz mono / 44.1 kHz stereo), ``labels.csv``."""
    for c, (clip, _, _) in enumerate(CLIPS):
        for i in range(1, n_frames + 1 + c % 2):
            write_image(root / "frames" / clip / f"frame_{i}", 7 * c + i).with_suffix(".jpg")
        rate, channels = (8000, 1) if c % 2 else (44100, 2)
        write_wav(root / "audio" / f"{clip}.wav", rate, channels, 0.6 + 0.5 * (c % 3), c)
    write_csv(root / "labels.csv", ["clip_id", "label", "group"], [list(r) for r in CLIPS])
    return root


def make_av_csv(root: Path) -> Path:
    """``pairs.csv`` of image_or_frames,audio,label,split (images, wavs at 8 kHz and 44.1 kHz)."""
    rows = []
    for c, (clip, label, _) in enumerate(CLIPS):
        img = write_image(root / "img" / clip, c)
        wav = write_wav(root / "snd" / f"{clip}.wav", 8000 if c % 2 else 44100, 1 + c % 2, 1.3, c)
        rows.append(
            [img.relative_to(root).as_posix(), wav.relative_to(root).as_posix(), label, ["train", "val", "test"][c % 3]]
        )
    write_csv(root / "pairs.csv", ["image_or_frames", "audio", "label", "split"], rows)
    return root / "pairs.csv"
