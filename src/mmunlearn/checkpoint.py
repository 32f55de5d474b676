"""Checkpoints: safetensors weights plus a JSON manifest with SHA-256 hashes; atomic; never pickle.

A checkpoint is a folder::

    model.safetensors        # the model's state dict
    train_state.safetensors  # optimizer tensors (only while training with the library loop)
    receipt.json ...         # attachments saved with the weights (a forget run's receipt and metrics)
    manifest.json            # model kind + config, SHA-256 of config and of every file, provenance

A Hugging Face ``save_pretrained`` folder (``config.json``, no manifest) of a CLIP, SigLIP or CLAP model
also loads (`mmunlearn.models.hf.load_hf_model`); such a model is saved in this format, its tokenizer's
files as attachments.

A save follows the folder-commit protocol of `mmunlearn.fileio.commit_folder` (new files under staged
names, the manifest replaced as the commit point, then renames and deletions), so a checkpoint folder is
at every instant, a kill included, the old complete checkpoint or the new complete one. Loading finds
each listed file with `mmunlearn.fileio.resolve_file` and verifies every hash before reading any tensor.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from .errors import CheckpointError
from .fileio import MANIFEST, canonical_json, commit_folder, read_json_manifest, resolve_file, sha256_bytes, sha256_file
from .models import MODELS, MultimodalModel
from .models.hf import HF_CONFIG, HFDualEncoder, is_tokenizer_file, load_hf_model
from .tensorio import tensors_to_bytes
from .versions import versions

FORMAT = "mmunlearn-checkpoint/1"
WEIGHTS = "model.safetensors"
TRAIN_STATE = "train_state.safetensors"

log = logging.getLogger(__name__)


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights as safetensors bytes (the same hash the manifest stores)."""
    return sha256_bytes(tensors_to_bytes(dict(model.state_dict())))


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, its manifest and the optimizer tensors if any."""

    model: MultimodalModel
    manifest: dict[str, Any]
    train_state: dict[str, Tensor] | None


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: MultimodalModel,
    *,
    provenance: dict[str, Any] | None = None,
    train_state: dict[str, Tensor] | None = None,
    extra: dict[str, Any] | None = None,
    attachments: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write ``model`` (and optionally optimizer tensors and attached files) to ``folder`` crash-atomically.

    Args:
        folder: checkpoint folder (created if needed).
        model: a registered model (its ``kind`` and ``config_dict()`` rebuild it).
        provenance: where the weights came from (dataset, recipe, seed...).
        train_state: flat name -> tensor map of training state (see `train.py`); without it a previous
            ``train_state.safetensors`` is removed, after the new manifest is committed.
        extra: further JSON-ready manifest fields (e.g. training progress).
        attachments: file name -> bytes saved in the same commit and listed with their SHA-256
            (``receipt.json``, ``metrics.json`` of a forget run).

    Returns:
        The manifest that was written.
    """
    config = model.config_dict()
    manifest = {
        "format": FORMAT,
        "model": model.kind,
        "config": config,
        "config_sha256": sha256_bytes(canonical_json(config).encode()),
        "provenance": provenance or {},
        "versions": versions(),
        **(extra or {}),
    }
    blobs = {WEIGHTS: tensors_to_bytes(dict(model.state_dict()))}
    if train_state is not None:
        blobs[TRAIN_STATE] = tensors_to_bytes(train_state)
    if isinstance(model, HFDualEncoder):
        blobs.update(model.tokenizer_files())
    blobs.update(attachments or {})
    return commit_folder(folder, blobs.items(), manifest, owned=(WEIGHTS, TRAIN_STATE))


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint manifest (no tensors are read).

    Raises:
        CheckpointError: missing folder or manifest, invalid JSON, wrong format, or a config hash mismatch.
    """
    path = Path(folder) / MANIFEST
    manifest = read_json_manifest(path, FORMAT, "checkpoint")
    if sha256_bytes(canonical_json(manifest.get("config")).encode()) != manifest.get("config_sha256"):
        raise CheckpointError(f"the model config in {path} does not match its SHA-256: the manifest was edited")
    return manifest


def _verified_path(folder: Path, name: str, expected: str) -> Path:
    path = resolve_file(folder, name, expected)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    if sha256_file(path) != expected:
        raise CheckpointError(f"checkpoint file {path} does not match its SHA-256: truncated or tampered with")
    return path


def _load_verified(folder: Path, name: str, expected: str) -> dict[str, Tensor]:
    path = _verified_path(folder, name, expected)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def load_checkpoint(folder: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint written by `save_checkpoint`, or a Hugging Face ``save_pretrained`` folder.

    A folder with a ``config.json`` and no manifest is loaded by `mmunlearn.models.hf.load_hf_model`; its
    manifest is made up (no provenance, no files).

    Raises:
        CheckpointError: anything missing, unreadable, truncated, tampered with or inconsistent.
    """
    folder = Path(folder)
    if not (folder / MANIFEST).exists() and (folder / HF_CONFIG).is_file():
        hf = load_hf_model(folder)
        made_up = {"format": FORMAT, "model": hf.kind, "config": hf.config_dict(), "provenance": {}, "files": {}}
        return Checkpoint(hf.to(map_location), made_up, None)
    manifest = read_manifest(folder)
    files = manifest.get("files", {})
    if WEIGHTS not in files:
        raise CheckpointError(f"{folder / MANIFEST} lists no {WEIGHTS}")
    weights = _load_verified(folder, WEIGHTS, files[WEIGHTS])
    try:
        model = MODELS.create(manifest["model"], **manifest["config"])
        model.load_state_dict(weights)
        assert isinstance(model, MultimodalModel)
        if isinstance(model, HFDualEncoder):
            names = [n for n in files if is_tokenizer_file(n)]
            model.attach_tokenizer({n: _verified_path(folder, n, files[n]).read_bytes() for n in names})
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {folder} does not fit model {manifest.get('model')!r}: {e}") from e
    state = _load_verified(folder, TRAIN_STATE, files[TRAIN_STATE]) if TRAIN_STATE in files else None
    return Checkpoint(model.to(map_location), manifest, state)


def describe(folder: str | os.PathLike[str]) -> str:
    """One line about a checkpoint, for logs."""
    m = read_manifest(folder)
    return f"{m['model']} from {json.dumps(m.get('provenance', {}), sort_keys=True)}"
