"""Where the time of ``mmunlearn demo`` goes: each phase of the demo path timed, then the top cProfile entries.

Runs what the demo runs, phase by phase, in one process: train the av-digits recipe (with its per-epoch
checkpoints), evaluate it, forget the images of 10% of the training samples with CCU, retrain from
scratch, and the scenario-A metrics of the CCU model, the retrained one and the original. It prints
seconds and share per phase, and how much of the machine other processes used meanwhile ("other load",
in cores): this machine is shared, so compare runs (before / after a change) only at low other load.

    python benchmarks/profile_demo.py [--size full] [--epochs N] [--threads N] [--top 25]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mmunlearn import UNLEARNERS, ForgetRequest, UnlearnData, evaluate, load_dataset, train_model
from mmunlearn.metrics.scenario_a import ScenarioAData, scenario_a_metrics
from mmunlearn.recipes import new_model, recipe_for
from mmunlearn.unlearn import retrain_config


def busy_seconds() -> float | None:
    """CPU seconds used by every process on the machine so far (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class Phases:
    """Times named phases under one profiler; records the other processes' load during each."""

    def __init__(self) -> None:
        self.profiler = cProfile.Profile()
        self.rows: list[tuple[str, float, float | None]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        busy0, own0, t0 = busy_seconds(), time.process_time(), time.perf_counter()
        self.profiler.enable()
        try:
            yield
        finally:
            self.profiler.disable()
            seconds, busy1 = time.perf_counter() - t0, busy_seconds()
            other = None
            if busy0 is not None and busy1 is not None:
                other = max(0.0, busy1 - busy0 - (time.process_time() - own0)) / seconds
            self.rows.append((name, seconds, other))
            print(f"  {name}: {seconds:.1f} s", flush=True)

    def report(self, top: int) -> None:
        total = sum(s for _, s, _ in self.rows)
        print(f"\n{'phase':<22}{'seconds':>9}{'share':>8}{'other load':>12}")
        for name, s, other in self.rows:
            load = "n/a" if other is None else f"{other:.2f}"
            print(f"{name:<22}{s:>9.1f}{s / total:>8.1%}{load:>12}")
        print(f"{'total':<22}{total:>9.1f}")
        stats = pstats.Stats(self.profiler)
        print(f"\ntop {top} functions by own time (C++ ops show as built-in methods)")
        stats.sort_stats("tottime").print_stats(top)
        print(f"top {top} mmunlearn functions by cumulative time")
        stats.sort_stats("cumulative").print_stats("mmunlearn", top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (quick runs)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(os.sched_getaffinity(0))} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    phase = Phases()
    recipe = recipe_for("av-digits")
    config = recipe.train.replace(seed=args.seed, progress=False, **({"epochs": args.epochs} if args.epochs else {}))
    with phase("load data"):
        splits = load_dataset("av-digits", args.size, 0)
    with tempfile.TemporaryDirectory() as tmp, phase("train original"):
        original = train_model(new_model(splits, args.seed, recipe), splits.train, config, out_dir=tmp).model
    with phase("evaluate original"):
        evaluate(original, {"train": splits.train, "val": splits.val, "test": splits.test})
    request = ForgetRequest.random_fraction(splits.train, 0.1, args.seed, ("image",), "profile_demo")
    data = UnlearnData.from_request(request, splits.train, splits.val)
    scenario = ScenarioAData(data.unlearn, data.retain, splits.test, splits.val, data.forget_modality)
    methods: dict[str, Callable[[], Any]] = {
        "ccu": lambda: UNLEARNERS.create("ccu", seed=args.seed, progress=False),
        "retrain": lambda: UNLEARNERS.create("retrain", **retrain_config(config, progress=False)),
    }
    models = {}
    for name, make in methods.items():
        with phase(name):
            models[name] = make().unlearn(original, data, original=original)
        with phase(f"metrics {name}"):
            scenario_a_metrics(models[name], original, scenario)
    with phase("metrics original"):
        scenario_a_metrics(original, original, scenario)
    phase.report(args.top)


if __name__ == "__main__":
    main()
