"""Fine-tuned victims pretrained on other pairs of the same caption set: zero-shot R@1 next to the R@1 after
fine-tuning on each saved protection of a bench (docs/victims.md, "Measured").

The model is pretrained once (the target set built at ``--pretrain-data-seed``, victim seed ``--seed``) and
fine-tuned on the clean pairs and on every protection of ``--protections`` made for the target set at data
seed 0 by the protect seed ``--protect-seed`` (the bench's protection folders,
``<set>-<size>-<protector>-seed<S>-<tag>``); grouped variants included. Prints one row per protection.

    python benchmarks/finetune_zero_shot.py --dataset shapes-captions --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mmunlearn.data import load_dataset
from mmunlearn.protectors import ProtectedDataset
from mmunlearn.textfmt import format_table
from mmunlearn.victim import VictimConfig, pretrained_victim, train_victim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="shapes-captions")
    p.add_argument("--size", default="small", choices=["small", "full"])
    p.add_argument("--pretrain-data-seed", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="victim seed (the bench's: protect seed + 1)")
    p.add_argument("--protect-seed", type=int, default=0)
    p.add_argument("--protections", default="runs/bench/protection/protections")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(args.dataset, args.size, 0, args.data_dir)
    config = VictimConfig(seed=args.seed, regime="finetune", pretrain=args.dataset,
                          pretrain_data_seed=args.pretrain_data_seed, progress=False)  # fmt: skip
    t0 = time.perf_counter()
    model, _ = pretrained_victim(splits, config, args.seed, args.data_dir)
    print(f"pretrained on {args.dataset} data seed {args.pretrain_data_seed} in {time.perf_counter() - t0:.1f} s")
    pattern = f"{args.dataset}-{args.size}-*-seed{args.protect_seed}-*"
    folders = sorted(f for f in Path(args.protections).glob(pattern) if "-clean-" not in f.name)
    rows = []
    for name, protected in [("clean", None), *((f.name, ProtectedDataset.load(f)) for f in folders)]:
        result = train_victim(splits, protected, config, pretrained=model)
        m = {x.name: x.value for x in result.metrics}
        groups = protected.config.get("groups") if protected is not None else None
        label = name if protected is None else f"{protected.method}" + (f" g{groups}" if groups else "")
        rows.append([label, m["zero_shot_i2t_r1"], m["zero_shot_t2i_r1"], m["i2t_r1"], m["t2i_r1"], result.seconds])
        print(f"{label}: {rows[-1][1:]}", flush=True)
    print(format_table(["protection", "zero-shot i2t R@1", "zero-shot t2i R@1", "i2t R@1", "t2i R@1", "s"], rows))


if __name__ == "__main__":
    main()
