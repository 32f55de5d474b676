"""The library call behind ``mmunlearn forget``: request -> unlearner -> new checkpoint, metrics, receipt."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint, state_sha256, versions
from .data import DatasetSplits, ForgetRequest, load_dataset
from .errors import CheckpointError, DataError
from .fileio import atomic_write_json
from .metrics.scenario_a import ScenarioAData, scenario_a_metrics
from .models import MultimodalClassifier
from .results import MetricResult
from .unlearn import UNLEARNERS, Unlearner


@dataclass(frozen=True)
class RequestSpec:
    """How the CLI names a request; exactly one selector is set.

    Attributes:
        fraction: a seeded random share of the training samples.
        ids_file: a text file with one sample id per line.
        identities: identity group names (fonts, writers, voices).
        label: one class.
        modalities: what to forget of them.
        reason: recorded in the receipt.
        seed: seed of the random selection.
    """

    fraction: float | None = None
    ids_file: str | None = None
    identities: tuple[str, ...] = ()
    label: int | None = None
    modalities: tuple[str, ...] = ("image",)
    reason: str = ""
    seed: int = 0

    def build(self, train: Any) -> ForgetRequest:
        """Resolve the spec against a training set."""
        chosen = [self.fraction is not None, self.ids_file is not None, bool(self.identities), self.label is not None]
        if sum(chosen) != 1:
            raise DataError("give exactly one of --forget-fraction, --forget-ids, --forget-identity, --forget-class")
        mods = self.modalities
        if self.fraction is not None:
            return ForgetRequest.random_fraction(train, self.fraction, self.seed, mods, self.reason)
        if self.identities:
            return ForgetRequest.identities(train, self.identities, mods, self.reason)
        if self.label is not None:
            return ForgetRequest.one_class(train, self.label, mods, self.reason)
        return ForgetRequest(tuple(read_ids(Path(self.ids_file or ""))), frozenset(mods), self.reason)


def read_ids(path: Path) -> list[str]:
    """Sample ids from a text file, one per line (blank lines and ``#`` comments ignored)."""
    if not path.is_file():
        raise DataError(f"ids file {path} not found")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


@dataclass
class ForgetResult:
    """What `forget` returns and writes: the new model, its metrics and the receipt."""

    model: MultimodalClassifier
    metrics: list[MetricResult]
    seconds: float
    receipt: dict[str, Any]


def splits_of(manifest: dict[str, Any], data_dir: str | os.PathLike[str] | None) -> DatasetSplits:
    """The dataset a checkpoint was trained on, from its provenance."""
    prov = manifest.get("provenance", {})
    if "dataset" not in prov:
        raise CheckpointError("the checkpoint records no dataset in its provenance; cannot tell what it was trained on")
    return load_dataset(prov["dataset"], prov.get("size", "small"), prov.get("data_seed", 0), data_dir)


def make_unlearner(
    method: str, manifest: dict[str, Any], seed: int, overrides: dict[str, Any], progress: bool
) -> Unlearner:
    """Instantiate a method; ``retrain`` inherits the original training recipe from the manifest."""
    base: dict[str, Any] = {"seed": seed, "progress": progress}
    if method == "retrain":
        recipe = manifest.get("provenance", {}).get("train", {})
        keys = ("epochs", "lr", "batch_size", "weight_decay", "warmup_epochs", "grad_clip", "seed")
        base.update({k: recipe[k] for k in keys if k in recipe})
    return UNLEARNERS.create(method, **{**base, **overrides})


def forget(
    model_dir: str | os.PathLike[str],
    method: str,
    spec: RequestSpec,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> ForgetResult:
    """Apply a forget request to a trained classifier and write the new checkpoint, metrics and receipt.

    Everything is validated (request, method, config keys, modalities) before any work starts.

    Returns:
        The `ForgetResult`; ``out_dir`` holds the checkpoint, ``metrics.json`` and ``receipt.json``.
    """
    ckpt = load_checkpoint(model_dir, map_location=device)
    original = ckpt.model
    if not isinstance(original, MultimodalClassifier):
        raise CheckpointError(f"forget works on multimodal classifiers; {model_dir} holds a {original.kind!r}")
    splits = splits_of(ckpt.manifest, data_dir)
    request = spec.build(splits.train)
    request.validate(splits.train, original.modalities)
    unlearner = make_unlearner(method, ckpt.manifest, seed, overrides or {}, progress)
    unlearn_set, retain_true = request.unlearn_set(splits.train), request.retain_set(splits.train)
    forget_modality = "image" if "image" in request.modalities else sorted(request.modalities)[0]
    t0 = time.perf_counter()
    new = unlearner.unlearn(
        original,
        unlearn_set,
        request.gold_standard_set(splits.train),
        original=original,
        modalities=request.modalities,
        validation=splits.val,
    )
    seconds = time.perf_counter() - t0
    assert isinstance(new, MultimodalClassifier)
    data = ScenarioAData(unlearn_set, retain_true, splits.test, splits.val, forget_modality)
    metrics = scenario_a_metrics(new, original, data)
    receipt = _receipt(request, unlearner, original, new, metrics, seconds, model_dir)
    _write(Path(out_dir), new, ckpt.manifest, metrics, receipt)
    return ForgetResult(new, metrics, seconds, receipt)


def _receipt(
    request: ForgetRequest,
    unlearner: Unlearner,
    before: torch.nn.Module,
    after: torch.nn.Module,
    metrics: list[MetricResult],
    seconds: float,
    model_dir: str | os.PathLike[str],
) -> dict[str, Any]:
    config = dataclasses.asdict(unlearner.config)
    config.pop("progress", None)
    return {
        "request": request.to_dict(),
        "method": {"name": unlearner.name, "paper": unlearner.paper, "config": config},
        "model_before": {"path": str(model_dir), "sha256": state_sha256(before)},
        "model_after": {"sha256": state_sha256(after)},
        "metrics": [m.to_dict() for m in metrics],
        "seconds": seconds,
        "created_unix": time.time(),
        "versions": versions(),
    }


def _write(
    out: Path,
    model: MultimodalClassifier,
    manifest: dict[str, Any],
    metrics: list[MetricResult],
    receipt: dict[str, Any],
) -> None:
    provenance = {
        **manifest.get("provenance", {}),
        "unlearned": {"method": receipt["method"]["name"], "request": receipt["request"]},
    }
    save_checkpoint(out, model, provenance=provenance)
    atomic_write_json(out / "metrics.json", [m.to_dict() for m in metrics])
    atomic_write_json(out / "receipt.json", receipt)


def load_receipt(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the receipt of a forget run."""
    return json.loads((Path(folder) / "receipt.json").read_text())  # type: ignore[no-any-return]
