"""Seconds per training step of the av-digits recipe model with 1 and 2 torch threads, idle and while
other processes keep every core busy (why the CLI runs one thread per idle core: `runtime.idle_cores`).

Both thread counts alternate in one run, so their ratio is what to read (these machines are noisy).

    python benchmarks/threads_under_load.py [--steps 8] [--repeats 2] [--hogs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import torch

from mmunlearn.data import load_dataset
from mmunlearn.optim import optimizer_for, optimizer_step
from mmunlearn.recipes import new_model, recipe_for
from mmunlearn.runtime import available_cores, epoch_batches, idle_cores


def spin(seconds: float) -> None:
    """A process that keeps one core busy."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def seconds_per_step(model, opt, data, batches, threads: int) -> float:  # type: ignore[no-untyped-def]
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for idx in batches:
        optimizer_step(model, opt, model.loss(data.batch(idx)), 5.0)
    return (time.perf_counter() - t0) / len(batches)


def measure(steps: int, repeats: int) -> dict[int, float]:
    splits = load_dataset("av-digits", "full", 0)
    model = new_model(splits, 0).train()
    opt = optimizer_for(model, recipe_for("av-digits").train)
    batches = epoch_batches(len(splits.train), 128, 0, 0)[:steps]
    seconds_per_step(model, opt, splits.train, batches[:2], 2)  # warm-up
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(repeats):
        for threads in (2, 1) if r % 2 == 0 else (1, 2):
            times[threads].append(seconds_per_step(model, opt, splits.train, batches, threads))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--hogs", type=int, default=available_cores(), help="busy processes in the loaded case")
    args = p.parse_args()
    print(f"{available_cores()} cores; idle_cores() now: {idle_cores()}")
    for label, hogs in (("idle", 0), (f"{args.hogs} busy processes", args.hogs)):
        procs = [mp.Process(target=spin, args=(600.0,), daemon=True) for _ in range(hogs)]
        for proc in procs:
            proc.start()
        try:
            t = measure(args.steps, args.repeats)
        finally:
            for proc in procs:
                proc.terminate()
        print(f"{label:<20} 2 threads {t[2]:.3f} s/step, 1 thread {t[1]:.3f} s/step, 2/1 = {t[2] / t[1]:.2f}")


if __name__ == "__main__":
    main()
