"""Training throughput under torchrun: two data-parallel CPU processes against one, at the same global batch.

Each configuration trains the av-digits recipe model (small set) for a few epochs through the CLI and
reads the training seconds from its JSON record (`train_model`'s wall time: the epochs only, not start-up,
data loading or evaluation); samples/s = epochs x steps per epoch x batch size / seconds. Configurations:

* ``1 process x 1 thread`` and ``1 process x T threads`` (T = --nproc): one process, no torchrun;
* ``torchrun N x 1 thread``: ``python -m torch.distributed.run --standalone --nproc_per_node N``, gloo.

The machine's 1-minute load average is printed before and after: on a shared machine the figures are only
comparable when it is low and steady.

    python benchmarks/torchrun_throughput.py [--epochs 3] [--batch-size 64] [--nproc 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def train_seconds(cmd: list[str], threads: int, out: Path) -> float:
    """Run one training command; the training seconds of its JSON record."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MMUNLEARN_THREADS": str(threads)}
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    record = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return float(record["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mmunlearn.data import load_dataset

    n_train = len(load_dataset("av-digits", "small", 0, args.data_dir).train)  # builds it once, up front
    samples = args.epochs * (n_train // args.batch_size) * args.batch_size
    train = ["train", "--dataset", "av-digits", "--size", "small", "--epochs", str(args.epochs)]
    train += ["--batch-size", str(args.batch_size), "--device", "cpu", "--quiet", "--json"]
    if args.data_dir:
        train += ["--data-dir", args.data_dir]
    one = [sys.executable, "-m", "mmunlearn", *train]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    configs = {
        "1 process x 1 thread": (one, 1),
        f"1 process x {args.nproc} threads": (one, args.nproc),
        f"torchrun {args.nproc} x 1 thread": ([*run, "-m", "mmunlearn", *train], 1),
    }
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (cmd, threads)) in enumerate(configs.items()):
            seconds = train_seconds(cmd, threads, Path(tmp) / f"run{i}")
            result[name] = {"seconds": seconds, "samples_per_s": samples / seconds}
    base = result["1 process x 1 thread"]["samples_per_s"]
    for r in result.values():
        r["ratio_to_1x1"] = r["samples_per_s"] / base
    summary = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "samples": samples,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "runs": result,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"av-digits small, {args.epochs} epochs x batch {args.batch_size} = {samples} samples, {os.cpu_count()} cores"
    )
    print(f"load average before {summary['load_before']:.2f}, after {summary['load_after']:.2f}")
    for name, r in result.items():
        print(f"{name:<26} {r['seconds']:7.2f} s  {r['samples_per_s']:8.1f} samples/s  x{r['ratio_to_1x1']:.2f}")


if __name__ == "__main__":
    main()
