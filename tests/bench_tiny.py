"""A tiny real bench (the three scenarios, a few seconds of training) shared by the bench and report tests."""

from __future__ import annotations

from pathlib import Path

from mmunlearn.benchmarking import ResultStore, load_config, run_bench

TINY_YAML = """\
name: tiny
grids:
  - scenario: unlearn
    dataset: av-digits
    size: small
    seeds: [0, 1]
    methods: [ccu, finetune]
    variants: {"ccu -a": {method: ccu, use_a: false}}
    overrides: {finetune: {epochs: 1}, ccu: {epochs: 1}}
    train: {epochs: 2}
  - scenario: unlearn
    dataset: shapes-captions
    size: small
    seeds: [0]
    requests: [concept]
    methods: [finetune]
    overrides: {finetune: {epochs: 1}}
    train: {epochs: 1}
  - scenario: protect
    dataset: shapes-captions
    size: small
    seeds: [0]
    protectors: [random_noise]
    victims: [{}, {defence: jpeg10}]
    victim_epochs: 1
"""


def write_config(folder: Path, text: str = TINY_YAML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.yaml"
    path.write_text(text)
    return path


def run_tiny(folder: Path, data_dir: Path, text: str = TINY_YAML) -> Path:
    """Run the tiny bench into ``folder / results.jsonl`` and return the store's path."""
    store = ResultStore(folder / "results.jsonl")
    run_bench(load_config(write_config(folder, text)), store, folder / "work", data_dir=data_dir, progress=False,
              command="mmunlearn bench bench.yaml")  # fmt: skip
    return store.path
