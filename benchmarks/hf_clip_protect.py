"""Scenario B with transformers' ``CLIPModel`` on both sides: MEM crafted on a random-initialised CLIP
surrogate (MEM's from-scratch setting), met by a fresh CLIP victim; next to the clean CLIP victim and to MEM
crafted on the library's cnn surrogate. Recall@1 both ways on the clean test split, and the seconds.

No weights are downloaded: both CLIPs are built from a config over the dataset's word vocabulary
(`mmunlearn.victim_models.hf_clip_model`), so protected trigger ids reach them unchanged.

    python benchmarks/hf_clip_protect.py [--dataset shapes-captions] [--size small] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from mmunlearn.data import DatasetSplits, load_dataset
from mmunlearn.protectors import PROTECTORS, ProtectedDataset
from mmunlearn.victim import VictimConfig, train_victim
from mmunlearn.victim_models import hf_clip_model


def victim_row(
    label: str, splits: DatasetSplits, protected: ProtectedDataset | None, seed: int, protect_s: float
) -> str:
    """One table row: a fresh CLIP victim (seed + 1) trained on ``protected`` (None: clean pairs)."""
    result = train_victim(splits, protected, VictimConfig(seed=seed + 1, regime="hf-clip", progress=False))
    r1 = f"{result.value('i2t_r1'):.3f} / {result.value('t2i_r1'):.3f}"
    return f"| {label} | {r1} | {result.value('mean_recall'):.3f} | {protect_s:.0f} | {result.seconds:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="shapes-captions")
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0, help="surrogate seed (the victims train with seed + 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(args.dataset, args.size, 0)
    print(f"{args.dataset} ({args.size}), surrogate seed {args.seed}, {torch.__version__}, {args.threads} thread(s)")
    print(f"chance Recall@1: {1 / len(splits.test):.3f}\n")
    print("| training data of the CLIP victim | R@1 i2t / t2i | mean recall | protect s | victim s |")
    print("|---|---|---|---|---|")
    print(victim_row("clean", splits, None, args.seed, 0.0), flush=True)
    surrogates: list[tuple[str, Any]] = [("mem, CLIP surrogate", hf_clip_model(splits, args.seed))]
    for label, surrogate in [*surrogates, ("mem, cnn surrogate", None)]:  # None: the library's fresh cnn
        start = time.perf_counter()
        protected = PROTECTORS.create("mem", seed=args.seed, progress=False).protect(splits.train, surrogate=surrogate)
        print(victim_row(label, splits, protected, args.seed, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
