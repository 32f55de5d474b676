"""How CCU's defaults were chosen: a grid over its knobs scored on the validation split only.

No retrained model and no test data are used. The target for U's image-only accuracy is the
original model's image-only accuracy on the validation split (data from the training distribution
it never trained on): a model retrained without U's images sees them as exactly such unseen data.
The score of a configuration adds

* |image-only accuracy on U - that target|          (forget to the level of unseen data),
* the drop in fused accuracy on the validation split  (utility),
* the drop in audio-only accuracy on U               (cross-modal retention),

and the script prints every configuration's parts, its seconds, and the best one.

    python benchmarks/tune_ccu.py --size full --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from scenario_a import original  # benchmarks/ is on sys.path when this script runs

from mmunlearn.data import ForgetRequest, load_dataset
from mmunlearn.evaluate import classifier_logits
from mmunlearn.metrics.functional import accuracy
from mmunlearn.models import MultimodalClassifier
from mmunlearn.textfmt import format_table
from mmunlearn.unlearn import UNLEARNERS, UnlearnData

GRID: dict[str, list[Any]] = {
    "epochs": [2, 3],
    "lr": [2e-4, 3e-4],
    "lambda_a": [0.5, 1.0],
}


def acc(model: MultimodalClassifier, data, modality: str | None) -> float:  # type: ignore[no-untyped-def]
    return accuracy(classifier_logits(model, data, modality), data.labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-a", help="cache of the original models")
    args = p.parse_args()
    splits = load_dataset("av-digits", args.size, 0)
    model = original(args.size, args.seed, Path(args.work))
    req = ForgetRequest.random_fraction(splits.train, 0.1, args.seed)
    data = UnlearnData.from_request(req, splits.train, splits.val)
    u = data.unlearn
    target = acc(model, splits.val, "image")
    base_val, base_audio = acc(model, splits.val, None), acc(model, u, "audio")
    print(f"original: image-only U {acc(model, u, 'image'):.3f}, target (image-only val) {target:.3f}, "
          f"fused val {base_val:.3f}, audio-only U {base_audio:.3f}")  # fmt: skip
    rows = []
    for values in itertools.product(*GRID.values()):
        config = dict(zip(GRID, values, strict=True))
        t0 = time.perf_counter()
        new = UNLEARNERS.create("ccu", seed=args.seed, progress=False, **config).unlearn(model, data)
        secs = time.perf_counter() - t0
        img, val, aud = acc(new, u, "image"), acc(new, splits.val, None), acc(new, u, "audio")
        parts = (abs(img - target), max(0.0, base_val - val), max(0.0, base_audio - aud))
        rows.append([*values, img, val, aud, *parts, sum(parts), secs])
        print(config, f"score {sum(parts):.3f}", flush=True)
    rows.sort(key=lambda r: r[-2])
    headers = [*GRID, "img U", "fused val", "audio U", "|img-target|", "val drop", "audio drop", "score", "s"]
    print(format_table(headers, rows, digits=4))
    print("best:", dict(zip(GRID, rows[0][: len(GRID)], strict=True)))


if __name__ == "__main__":
    main()
