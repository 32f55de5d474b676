"""Throughput and peak memory of the layout loader: the first (decoding) pass and a cached load.

Writes an N-image fixture (16 x 16 RGB PNGs with one caption each, Hugging Face ``imagefolder`` or
``csv`` layout) in a temporary folder, plus an N/10 one, then times in a fresh process each:

- the first pass (`mmunlearn.data.layouts.prepare_layout`: parse, decode, write the cache), and
- a cached load (`mmunlearn.data.load_layout`: verify the checksums, read, build the `DatasetSplits`),

and prints images/s, the process's peak RSS (``ru_maxrss``, with its RSS after the imports) and the
tracemalloc peak of the phase. The first pass streams tensors to disk, so its peak should stay flat from
N/10 to N; a load holds the dataset in memory (float32 images: 12 KiB each at 32 x 32), so its peak grows.

    python benchmarks/loader_throughput.py [--n 100000] [--layout imagefolder|csv] [--image-size 32]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image


def write_fixture(root: Path, n: int, layout: str) -> Path:
    """``n`` random 16 x 16 PNGs under ``root/img/`` and their captions; returns what to load."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    rows = []
    for i in range(n):
        name = f"img/{i:07d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name, compress_level=1)
        rows.append([name, f"picture number {i % 1000} of a random pattern"])
    table = root / ("metadata.csv" if layout == "imagefolder" else "captions.csv")
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name" if layout == "imagefolder" else "image", "caption"])
        w.writerows(rows)
    return root if layout == "imagefolder" else table


def worker(phase: str, path: str, layout: str, data_dir: str, image_size: int) -> None:
    """Run one phase in this (fresh) process and print its measurements as JSON."""
    from mmunlearn.data.layouts import load_layout, prepare_layout

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    if phase == "first":
        prepare_layout(path, layout, image_size=image_size, data_dir=data_dir)
    else:
        d = load_layout(path, layout, image_size=image_size, data_dir=data_dir)
        assert sum(len(d.split(s)) for s in ("train", "val", "test")) > 0
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps({"seconds": seconds, "rss_mb": rss_kb / 1024, "base_mb": base_kb / 1024, "traced_mb": peak / 2**20})
    )


def run_phase(phase: str, path: Path, layout: str, data_dir: Path, image_size: int) -> dict[str, float]:
    """Run `worker` in a fresh Python process (so each peak RSS is its own) and parse its output."""
    cmd = [sys.executable, __file__, "--worker", phase, "--path", str(path), "--layout", layout,
           "--data-dir", str(data_dir), "--image-size", str(image_size)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Parse the arguments; write the fixtures, time both phases at N/10 and N, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="images in the large fixture (default 100000)")
    ap.add_argument("--layout", choices=["imagefolder", "csv"], default="imagefolder")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--worker", choices=["first", "cached"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.path, args.layout, args.data_dir, args.image_size)
        return
    with tempfile.TemporaryDirectory(prefix="loader-throughput-") as tmp:
        print(f"layout={args.layout} source images 16x16 PNG -> {args.image_size}x{args.image_size} RGB")
        print(
            f"{'N':>8} {'phase':>7} {'images/s':>10} {'seconds':>8} {'peak RSS MB':>12} {'RSS after imports':>18} {'traced peak MB':>15}"
        )
        for n in (max(1, args.n // 10), args.n):
            t0 = time.perf_counter()
            path = write_fixture(Path(tmp) / f"n{n}", n, args.layout)
            print(f"# wrote {n} PNGs in {time.perf_counter() - t0:.1f} s", flush=True)
            for phase in ("first", "cached"):
                r = run_phase(phase, path, args.layout, Path(tmp) / "cache", args.image_size)
                print(f"{n:>8} {phase:>7} {n / r['seconds']:>10.0f} {r['seconds']:>8.2f} {r['rss_mb']:>12.0f} "
                      f"{r['base_mb']:>18.0f} {r['traced_mb']:>15.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
