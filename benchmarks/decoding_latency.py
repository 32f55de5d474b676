"""Per-token generation latency of each decoding-time edit against the captioner it wraps, measured in one run.

The bench grids record a latency ratio per cell, but there each model is timed once while other cells may be
running; here the original and every edit are timed in turns (round-robin, best of ``--rounds``) on the same
batch of test images, so the ratios are comparable. The issue's goal: a decoding-time method at most 1.2x the
original's seconds per generated token.

    python benchmarks/decoding_latency.py --model runs/bench/stages/models/<captioner folder> \\
        --dataset shapes-captions [--concept 'red circle'] [--rounds 5] [--images 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from mmunlearn.checkpoint import load_checkpoint
from mmunlearn.data import ForgetRequest, load_dataset
from mmunlearn.data.concepts import caption_concepts
from mmunlearn.metrics.captioning import generated_tokens
from mmunlearn.runtime import configure_threads
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

METHODS = ("token_suppression", "logit_difference", "concept_guard")


def seconds_per_token(model, images: torch.Tensor) -> float:
    """Wall seconds of one greedy generation of ``images``, per generated token."""
    with torch.no_grad():
        t0 = time.perf_counter()
        ids = model.generate(images)
        return (time.perf_counter() - t0) / max(1, generated_tokens(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a captioner checkpoint folder")
    parser.add_argument("--dataset", default="shapes-captions")
    parser.add_argument("--size", default="small")
    parser.add_argument("--concept", default=None, help="default: the most frequent concept of the training set")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_threads(args.threads)
    splits = load_dataset(args.dataset, args.size)
    original = load_checkpoint(args.model).model.eval()
    concept = args.concept
    if concept is None:
        counts: dict[str, int] = {}
        for cs in caption_concepts(splits.train):
            for c in set(cs):
                counts[c] = counts.get(c, 0) + 1
        concept = max(sorted(counts), key=lambda c: counts[c])
    data = UnlearnData.from_request(ForgetRequest.concept_pairs(splits.train, concept), splits.train, splits.val)
    models = {"original": original}
    for name in METHODS:
        t0 = time.perf_counter()
        models[name] = UNLEARNERS.create(name, progress=False).unlearn(original, data).eval()
        print(f"{name}: built in {time.perf_counter() - t0:.1f} s")
    images = splits.test.inputs["image"][: args.images]
    best = dict.fromkeys(models, float("inf"))
    for _ in range(args.rounds):
        for name, model in models.items():
            best[name] = min(best[name], seconds_per_token(model, images))
    print(f"\n{args.dataset} ({args.size}), concept {concept!r}, {len(images)} test images, best of {args.rounds}")
    print(f"{'model':<18} {'ms / token':>10} {'ratio':>7}")
    for name, seconds in best.items():
        print(f"{name:<18} {1000 * seconds:10.3f} {seconds / best['original']:7.2f}")


if __name__ == "__main__":
    main()
