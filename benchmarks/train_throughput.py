"""Training-loop throughput of the library against a plain PyTorch loop, and full dataset build times.

Both loops train the same model (the av-digits recipe classifier) on the same data with the same
optimizer and batch size; they run several times in one process, in a rotating order after one
untimed warm-up, and the script prints the median samples/s of each and their ratio (these machines
are noisy, so only ratios from one run mean anything).

    python benchmarks/train_throughput.py [--size full] [--repeats 6] [--epochs 1] [--skip-builds]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from mmunlearn.data import DATASETS, build_dataset, load_dataset
from mmunlearn.optim import optimizer_for
from mmunlearn.recipes import new_model, recipe_for
from mmunlearn.runtime import configure_threads, epoch_batches
from mmunlearn.train import TrainConfig, lr_at, train_model


def plain_loop(model: torch.nn.Module, data, config: TrainConfig, recipe: bool = False) -> float:  # type: ignore[no-untyped-def]
    """The loop a user would write by hand; returns seconds.

    With ``recipe``, it also does what the recipe prescribes and the library loop therefore does: the
    warm-up + cosine learning rate (torch's LambdaLR) and gradient-norm clipping. Without, it is the
    bare minimum (no schedule, no clipping), so the ratio to it includes the recipe's own arithmetic.
    """
    opt = optimizer_for(model, config)
    steps = len(epoch_batches(len(data), config.batch_size, config.seed, 0))
    total, warmup = config.epochs * steps, round(config.warmup_epochs * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_at(i, total, warmup, 1.0))
    model.train()
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        for idx in epoch_batches(len(data), config.batch_size, config.seed, epoch):
            batch = data.batch(idx)
            loss = model.loss(batch)  # type: ignore[operator]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            if recipe:
                schedule.step()
    return time.perf_counter() - t0


def library_loop(model: torch.nn.Module, data, config: TrainConfig, out_dir: str | None) -> float:  # type: ignore[no-untyped-def]
    """`mmunlearn.train_model` (with or without per-epoch checkpoints); returns seconds."""
    t0 = time.perf_counter()
    train_model(model, data, config, out_dir=out_dir)
    return time.perf_counter() - t0


def _with_tmpdir(fn):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        return fn(tmp)


def throughput(size: str, repeats: int, epochs: int) -> None:
    splits = load_dataset("av-digits", size, 0)
    config = recipe_for("av-digits").train.replace(epochs=epochs, progress=False)
    n = len(epoch_batches(len(splits.train), config.batch_size, 0, 0)) * config.batch_size * epochs
    loops = {
        "plain": lambda m: plain_loop(m, splits.train, config),
        "plain+recipe": lambda m: plain_loop(m, splits.train, config, recipe=True),
        "library": lambda m: library_loop(m, splits.train, config, None),
        "library+ckpt": lambda m: _with_tmpdir(lambda d: library_loop(m, splits.train, config, d)),
    }
    times: dict[str, list[float]] = {k: [] for k in loops}
    names = list(loops)
    loops["plain"](new_model(splits, 0))  # warm-up (allocator, kernels), not timed
    for r in range(repeats):
        # Rotate the order so that no loop always runs first (or last) under changing load.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(loops[name](new_model(splits, 0)))
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(f"av-digits {size}: {len(splits.train)} training samples, {epochs} epoch(s), median of {repeats} runs")
    print(f"{'loop':<14}{'samples/s':>12}{'ratio to plain':>16}")
    for k, r in rate.items():
        print(f"{k:<14}{r:>12.1f}{r / rate['plain']:>16.3f}")


def build_times(size: str) -> None:
    print(f"\nbuild time of each {size} dataset (fresh cache)")
    with tempfile.TemporaryDirectory() as tmp:
        for name in DATASETS.names():
            t0 = time.perf_counter()
            build_dataset(name, size, 0, tmp)
            print(f"{name:<18}{time.perf_counter() - t0:>8.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--skip-builds", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores this process may use)")
    args = p.parse_args()
    configure_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    throughput(args.size, args.repeats, args.epochs)
    if not args.skip_builds:
        build_times(args.size)


if __name__ == "__main__":
    main()
