"""Scenario C on a Hugging Face ``CLIPModel``: a tiny CLIP (random init, as MEM's from-scratch setting) is
saved with ``save_pretrained``, trained on shapes-captions through ``mmunlearn train --init``, and made to
forget a concept with several methods next to retraining; each method's gap to retrain and its seconds.

No weights are downloaded: the model is built from a config and its tokenizer is a word-level
``tokenizers`` vocabulary over the dataset's captions, with CLIP's start and end tokens.

    python benchmarks/hf_clip_forget.py [--size small] [--concept 'red circle'] [--methods ccu finetune ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from mmunlearn.data import load_dataset
from mmunlearn.data.tokenizer import split_words
from mmunlearn.records.scenarios import HEADLINE_C, gap_to_retrain
from mmunlearn.results import MetricResult

START, END = "<|startoftext|>", "<|endoftext|>"
TOWER = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}


def clip_folder(captions: list[str], folder: Path, image_size: int = 32) -> Path:
    """A random-init ``CLIPModel`` (patch 8 ViT, 2-layer text tower) and its word-level tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = sorted({w for c in captions for w in split_words(c)})
    tokens = ["!", '"', *words, START, END]  # id 0 is never a word (it is the datasets' padding)
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=END))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=START, eos_token=END, pad_token=END, unk_token=END)
    ids = {"bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id, "pad_token_id": fast.pad_token_id}
    text = {**TOWER, "vocab_size": len(tokens), "max_position_embeddings": 32, **ids}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config={**TOWER, "image_size": image_size, "patch_size": 8},
                                 projection_dim=64))  # fmt: skip
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    processor = {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size},
                 "do_center_crop": True, "resample": 3, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def cli(*argv: str) -> dict[str, Any]:
    """Run ``mmunlearn ... --json --quiet``; the last JSON line of its output."""
    done = subprocess.run([sys.executable, "-m", "mmunlearn", *argv, "--json", "--quiet"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"mmunlearn {' '.join(argv)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def metrics_of(folder: Path) -> list[MetricResult]:
    return [MetricResult(**m) for m in json.loads((folder / "metrics.json").read_text())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=["small", "full"])
    p.add_argument("--concept", default="red circle")
    p.add_argument("--methods", nargs="+", default=["ccu", "cliperase", "finetune", "neggrad_plus", "scrub"])
    p.add_argument("--work", default="runs/hf-clip")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    splits = load_dataset("shapes-captions", args.size)
    clip = clip_folder([c for s in ("train", "val", "test") for c in splits.split(s).captions or []], work / "clip")
    trained = cli("train", "--dataset", "shapes-captions", "--size", args.size, "--init", str(clip),
                  "--out", str(work / "original"))  # fmt: skip
    test = {m["name"]: m["value"] for m in trained["metrics"] if m["split"] == "test"}
    print(f"CLIPModel trained from random init in {trained['seconds']:.0f} s: test mean recall "
          f"{test['mean_recall']:.3f} (chance {next(m['chance'] for m in trained['metrics'] if m['name'] == 'mean_recall' and m['split'] == 'test'):.3f})")  # fmt: skip
    runs: dict[str, tuple[list[MetricResult], float]] = {}
    for method in ["retrain", *args.methods]:
        out = cli("forget", "--model", str(work / "original"), "--method", method, "--concept", args.concept,
                  "--out", str(work / method))  # fmt: skip
        runs[method] = (metrics_of(work / method), float(out["seconds"]))
        if method == "retrain":
            before = [MetricResult(**m) for m in out["original_metrics"]]
            runs["original"] = (before, 0.0)
    ref, ref_secs = runs["retrain"]
    print(f"forget every pair naming {args.concept!r} ({out['request']['n_ids']} pairs); gap to retrain over "
          "the scenario-C headline metrics, seconds as a share of retrain's (same run):")  # fmt: skip
    print("| method | gap to retrain | s / retrain's s | zs_concept/unlearn | zs_retained/test | mean_recall/unlearn |")
    print("|---|---|---|---|---|---|")
    for name, (metrics, secs) in runs.items():
        values = {(m.name, m.split): m.value for m in metrics}
        print(f"| {name} | {gap_to_retrain(metrics, ref, HEADLINE_C):.4f} | {secs / ref_secs:.3f} | "
              f"{values.get(('zs_concept', 'unlearn'), float('nan')):.3f} | "
              f"{values.get(('zs_retained', 'test'), float('nan')):.3f} | "
              f"{values.get(('mean_recall', 'unlearn'), float('nan')):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
