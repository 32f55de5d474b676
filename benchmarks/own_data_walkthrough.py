"""Every published layout end to end through the command line: write a folder in the layout, then train,
forget and (image-caption layouts) protect on it, and print one line of figures per layout.

The folders are written from the built-in small sets (nothing is downloaded): shapes-captions' PNGs and
captions in the Karpathy, COCO, imagefolder and CSV layouts; av-digits-video's clips as frame folders
with a WAV of the spoken digit per clip (eSpeak NG, the clip's own voice) for av-frames and av-csv.
Each line shows what the loader read, the trained model's test figure, the forget run's figure on the
forgotten samples before and after (retrain's target is not computed here: see the benchmark grids),
and the protection's size.

    python benchmarks/own_data_walkthrough.py [--work runs/walkthrough] [--layouts karpathy coco ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from PIL import Image

from mmunlearn.data import load_dataset
from mmunlearn.data.audio import SAMPLE_RATE, SpeechSettings, synthesize
from mmunlearn.data.core import MultimodalDataset

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test"}
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def png(image: Any, path: Path) -> str:
    """Save a (C, H, W) float image in [0, 1] as PNG; returns the file name."""
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)
    return path.name


def caption_rows(splits: Any) -> list[tuple[str, str, Any, str]]:
    """(split, file name, image, caption) of every pair of a caption set."""
    return [
        (split, f"{split}_{i:05d}.png", data.inputs["image"][i], data.captions[i])
        for split in ("train", "val", "test")
        for data in [splits.split(split)]
        for i in range(len(data))
    ]


def write_karpathy(rows: list, root: Path) -> Path:
    images = [{"filename": png(img, root / "images" / name), "filepath": "images", "split": split, "imgid": k,
               "sentences": [{"raw": cap}]} for k, (split, name, img, cap) in enumerate(rows)]  # fmt: skip
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    return root


def write_coco(rows: list, root: Path) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for part, splits in (("train", {"train"}), ("val", {"val", "test"})):
        chosen = [(k, r) for k, r in enumerate(rows) if r[0] in splits]
        images = [{"id": k, "file_name": png(img, root / f"{part}2017" / name)} for k, (_, name, img, _) in chosen]
        anns = [{"id": k, "image_id": k, "caption": cap} for k, (_, _, _, cap) in chosen]
        (root / "annotations" / f"captions_{part}2017.json").write_text(
            json.dumps({"images": images, "annotations": anns})
        )
    return root


def write_imagefolder(rows: list, root: Path) -> Path:
    folders = {"train": "train", "val": "validation", "test": "test"}
    for split, folder in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"file_name": png(img, root / folder / name), "text": cap})
                 for s, name, img, cap in rows if s == split]  # fmt: skip
        (root / folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_csv(rows: list, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "pairs.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "caption"])
        for _, name, img, cap in rows:
            out.writerow([f"images/{png(img, root / 'images' / name)}", cap])
    return root / "pairs.csv"


def clip_rows(splits: Any) -> list[tuple[str, str, MultimodalDataset, int]]:
    """(split, clip id, dataset, row) of every clip of av-digits-video."""
    return [
        (s, f"{s}_{i:05d}", splits.split(s), i) for s in ("train", "val", "test") for i in range(len(splits.split(s)))
    ]


def write_clip(data: MultimodalDataset, i: int, folder: Path, wav: Path) -> None:
    """A clip's frames as PNGs and its spoken digit, in the clip's own voice, as a 16-bit WAV."""
    for t, frame in enumerate(data.inputs["video"][i]):
        png(frame, folder / f"frame_{t:03d}.png")
    label = int(data.labels[i])  # type: ignore[index]
    wave = synthesize(WORDS[label], SpeechSettings(data.groups["voice"][i]), seed=i)
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(wav, np.clip(wave, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def write_av_frames(clips: list, root: Path) -> Path:
    with open(_mkdir(root) / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["clip_id", "label", "group", "split"])
        for split, clip, data, i in clips:
            write_clip(data, i, root / "frames" / clip, root / "audio" / f"{clip}.wav")
            out.writerow([clip, WORDS[int(data.labels[i])], data.groups["voice"][i], split])  # type: ignore[index]
    return root


def write_av_csv(clips: list, root: Path) -> Path:
    with open(_mkdir(root) / "clips.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image_or_frames", "audio", "label", "group", "split"])
        for split, clip, data, i in clips:
            write_clip(data, i, root / "clips" / clip, root / "sounds" / f"{clip}.wav")
            label = int(data.labels[i])  # type: ignore[index]
            out.writerow([f"clips/{clip}", f"sounds/{clip}.wav", label, data.groups["voice"][i], split])
    return root / "clips.csv"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


CAPTION_WRITERS = {"karpathy": write_karpathy, "coco": write_coco, "imagefolder": write_imagefolder, "csv": write_csv}
AV_WRITERS = {"av-frames": write_av_frames, "av-csv": write_av_csv}


def cli(*argv: str) -> dict[str, Any]:
    """Run ``mmunlearn ... --json --quiet``; the last JSON line of its output."""
    cmd = [sys.executable, "-m", "mmunlearn", *argv, "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def value(metrics: list[dict[str, Any]], name: str, split: str) -> float:
    return next(m["value"] for m in metrics if m["name"] == name and m["split"] == split)


def walk(layout: str, path: Path, work: Path, data_dir: Path) -> dict[str, Any]:
    """Load twice (first decode, then the cache), train, forget and (captions) protect; the figures."""
    row: dict[str, Any] = {"layout": layout}
    for phase in ("first load s", "cached load s"):
        t0 = time.perf_counter()
        splits = load_dataset(str(path), layout=layout, data_dir=data_dir)
        row[phase] = time.perf_counter() - t0
    row["train/val/test"] = "/".join(str(len(splits.split(s))) for s in ("train", "val", "test"))
    row["modalities"] = "+".join(splits.train.modalities)
    src = ["--dataset", str(path), "--layout", layout, "--data-dir", str(data_dir)]
    trained = cli("train", *src, "--out", str(work / "original"))
    captions = layout in CAPTION_WRITERS
    key = ("mean_recall", "test") if captions else ("acc_fused", "test")
    row["original test"] = value(trained["metrics"], *key)
    forgot = cli("forget", "--model", str(work / "original"), "--method", "ccu", "--forget-fraction", "0.1",
                 "--data-dir", str(data_dir), "--out", str(work / "ccu"))  # fmt: skip
    metrics = json.loads((work / "ccu" / "metrics.json").read_text())
    name = ("mean_recall", "unlearn") if captions else ("acc_image", "unlearn")
    name = name if any(m["name"] == name[0] for m in metrics) else ("acc_video", "unlearn")
    row["U before -> after ccu"] = f"{value(forgot['original_metrics'], *name):.3f} -> {value(metrics, *name):.3f}"
    row["forgotten"] = f"{'+'.join(forgot['request']['modalities'])} of {forgot['request']['n_ids']}"
    if captions:
        protected = cli("protect", *src, "--method", "random_noise", "--out", str(work / "protected"))
        row["protected pairs"] = protected["pairs"]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/walkthrough", help="where the folders, caches and models go (replaced)")
    p.add_argument("--layouts", nargs="+", default=[*CAPTION_WRITERS, *AV_WRITERS])
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    captions = caption_rows(load_dataset("shapes-captions", "small"))
    clips = clip_rows(load_dataset("av-digits-video", "small"))
    for layout in args.layouts:
        t0 = time.perf_counter()
        written = (CAPTION_WRITERS[layout](captions, work / layout / "data") if layout in CAPTION_WRITERS
                   else AV_WRITERS[layout](clips, work / layout / "data"))  # fmt: skip
        print(f"{layout}: wrote {written} in {time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(walk(layout, written, work / layout, work / "cache"))
        print(json.dumps(rows[-1]), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print(
            "| " + " | ".join(f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys) + " |"
        )


if __name__ == "__main__":
    main()
