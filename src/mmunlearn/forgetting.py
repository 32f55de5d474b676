"""``mmunlearn forget`` on a checkpoint folder: how the CLI names a request, and the call behind the command."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .data import DatasetSplits, ForgetRequest, MultimodalDataset, load_dataset
from .errors import CheckpointError, DataError
from .pipeline import ForgetResult, run_request
from .unlearn import UNLEARNERS, Unlearner, retrain_config


@dataclass(frozen=True)
class RequestSpec:
    """How the CLI names a request; exactly one selector is set.

    Attributes:
        fraction: a seeded random share of the training samples.
        ids_file: a text file with one sample id per line.
        identities: identity group names (fonts, writers, voices).
        label: one class.
        modalities: what to forget of them (``("all",)``: every modality of the training set).
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

    def build(self, train: MultimodalDataset) -> ForgetRequest:
        """Resolve the spec against a training set."""
        chosen = [self.fraction is not None, self.ids_file is not None, bool(self.identities), self.label is not None]
        if sum(chosen) != 1:
            raise DataError("give exactly one of --forget-fraction, --forget-ids, --forget-identity, --forget-class")
        mods = tuple(train.modalities) if self.modalities == ("all",) else self.modalities
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


def splits_of(manifest: dict[str, Any], data_dir: str | os.PathLike[str] | None) -> DatasetSplits:
    """The dataset a checkpoint was trained on, from its provenance."""
    prov = manifest.get("provenance", {})
    if "dataset" not in prov:
        raise CheckpointError("the checkpoint records no dataset in its provenance; cannot tell what it was trained on")
    return load_dataset(prov["dataset"], prov.get("size", "small"), prov.get("data_seed", 0), data_dir)


def make_unlearner(
    method: str, manifest: dict[str, Any], seed: int, overrides: dict[str, Any], progress: bool
) -> Unlearner[Any, Any]:
    """Instantiate a method; ``retrain`` trains with the original's recipe, read from the checkpoint."""
    base: dict[str, Any] = {"seed": seed, "progress": progress}
    if method == "retrain":
        base = retrain_config(manifest.get("provenance", {}).get("train", {}), progress=progress)
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
    original_metrics: bool = False,
) -> ForgetResult:
    """Apply a forget request to a trained checkpoint and write the new checkpoint, metrics and receipt.

    Everything is validated (request, method, config keys, modalities) before any work starts.

    Returns:
        The `ForgetResult`; ``out_dir`` holds the checkpoint, ``metrics.json`` and ``receipt.json``.
    """
    ckpt = load_checkpoint(model_dir, map_location=device)
    splits = splits_of(ckpt.manifest, data_dir)
    request = spec.build(splits.train)
    unlearner = make_unlearner(method, ckpt.manifest, seed, overrides or {}, progress)
    return run_request(
        ckpt.model, splits.train, request, unlearner,
        validation=splits.val, test=splits.test, original_metrics=original_metrics,
        out_dir=out_dir, provenance=ckpt.manifest.get("provenance", {}), model_path=model_dir,
    )  # fmt: skip


def load_receipt(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the receipt of a forget run."""
    return json.loads((Path(folder) / "receipt.json").read_text())
