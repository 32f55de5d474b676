"""`ProtectedDataset`: per-pair image noise and text triggers, stored compactly, saved, loaded, applied.

Noise is stored as integers in units of 1/255 (int8 while the budget allows it, i.e. epsilon <= 127/255,
else int16), so 30,000 RGB 32x32 pairs take 92 MB. Triggers are int64 token ids, ``k`` per pair. Both
are keyed by the stable sample ids of the dataset they were computed for, never by row order.

A saved protection is a folder::

    protection.safetensors   # "noise" (N, C, H, W) int8/int16 and/or "triggers" (N, k) int64
    ids.json                 # the N sample ids, in the order of the tensors' rows
    manifest.json            # method, config, budget, source-dataset identity, SHA-256 of every file

A save follows the folder-commit protocol of `mmunlearn.fileio.commit_folder`, so a folder is at every
instant (a kill included) the old complete protection or the new complete one; loading verifies every
hash and every invariant (noise within epsilon, valid trigger ids) before returning.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import Tensor

from ..data.core import MultimodalDataset, data_fingerprint
from ..errors import CheckpointError, DataError
from ..fileio import MANIFEST, canonical_json, commit_folder, read_json_manifest, resolve_file, sha256_bytes
from ..tensorio import tensors_to_bytes

FORMAT = "mmunlearn-protected/1"
TENSORS = "protection.safetensors"
IDS = "ids.json"
FIRST_WORD_ID = 2
"""Token ids 0 and 1 are [PAD] and [UNK]; triggers use real words only."""


def noise_units(epsilon: float) -> int:
    """The L-inf budget in stored units: the largest multiple of 1/255 that is <= ``epsilon``."""
    return math.floor(epsilon * 255 + 1e-6)


def noise_dtype(epsilon: float) -> torch.dtype:
    """int8 when the budget fits in it (epsilon <= 127/255), else int16."""
    return torch.int8 if noise_units(epsilon) <= 127 else torch.int16


def quantize_noise(delta: Tensor, epsilon: float) -> Tensor:
    """Float noise -> stored units (rounded to the 1/255 grid, clipped to the budget).

    Args:
        delta: float (N, C, H, W) perturbation in pixel units.
        epsilon: L-inf budget.

    Returns:
        int8/int16 (N, C, H, W) noise in units of 1/255, each within ``noise_units(epsilon)``.
    """
    units = noise_units(epsilon)
    return (delta * 255).round().clamp(-units, units).to(noise_dtype(epsilon))


def add_noise(images: Tensor, noise: Tensor) -> Tensor:
    """Protected images: ``clip(images + noise / 255, 0, 1)``.

    Args:
        images: float (B, C, H, W) in [0, 1].
        noise: integer (B, C, H, W) units of 1/255.

    Returns:
        float (B, C, H, W) in [0, 1].
    """
    return (images + noise.to(images.dtype) / 255).clamp(0.0, 1.0)


def caption_lengths(text: Tensor) -> Tensor:
    """Length of each left-aligned id row: one past its last non-padding token. Returns int64 (N,)."""
    positions = torch.arange(1, text.shape[1] + 1)
    return (positions * (text != 0)).amax(dim=1) if text.numel() else torch.zeros(len(text), dtype=torch.long)


def trigger_budget(text: Tensor) -> int:
    """How many tokens can be prepended to every row of ``text`` (N, L) without dropping a word."""
    return int(text.shape[1] - (caption_lengths(text).max() if len(text) else 0))


def prepend_triggers(text: Tensor, triggers: Tensor) -> Tensor:
    """Caption rows with their trigger in front: the caption shifts right by ``k``.

    Args:
        text: int64 (B, L) left-aligned, 0-padded id rows.
        triggers: int64 (B, k) trigger ids.

    Returns:
        int64 (B, L): ``[t_1 .. t_k, caption ..., 0 ...]``.

    Raises:
        DataError: some caption has fewer than ``k`` free positions.
    """
    k = triggers.shape[1]
    if k == 0:
        return text
    budget = trigger_budget(text)
    if k > budget:
        raise DataError(
            f"a {k}-token trigger does not fit: the longest caption leaves {budget} free position(s) of {text.shape[1]}"
        )
    return torch.cat([triggers.to(text.dtype), text[:, : text.shape[1] - k]], dim=1)


def ids_sha256(ids: list[str]) -> str:
    """SHA-256 of an ordered id list."""
    return sha256_bytes("\n".join(ids).encode())


def dataset_source(dataset: MultimodalDataset, /, **extra: Any) -> dict[str, Any]:
    """The identity of the clean data a protection is computed for.

    Args:
        dataset: the clean pairs.
        extra: more identity fields, e.g. ``dataset``, ``size``, ``data_seed``, ``split`` of a built-in set.

    Returns:
        JSON-ready dict: name, number of pairs, vocabulary size, SHA-256 of the ids and of the data.
    """
    return {
        "name": dataset.name,
        "n": len(dataset),
        "vocab_size": len(dataset.vocab) if dataset.vocab is not None else None,
        "ids_sha256": ids_sha256(dataset.ids),
        "data_sha256": data_fingerprint(dataset),
        **extra,
    }


@dataclass
class ProtectedDataset:
    """Per-pair protection of a dataset.

    Attributes:
        ids: the protected sample ids (row i of ``noise`` and ``triggers`` belongs to ``ids[i]``).
        noise: int8/int16 (N, C, H, W) image noise in units of 1/255, or None (no image change).
        triggers: int64 (N, k) token ids prepended to each caption, or None (no text change).
        epsilon: the L-inf budget of the noise (None without noise).
        method: protector registry name.
        config: the protector's config.
        source: identity of the clean data (see `dataset_source`).
        stats: how generation went (seconds, surrogate losses...).
    """

    ids: list[str]
    noise: Tensor | None
    triggers: Tensor | None
    epsilon: float | None
    method: str
    config: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def trigger_len(self) -> int:
        """Tokens per trigger (0 without triggers)."""
        return 0 if self.triggers is None else int(self.triggers.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors."""
        return sum(t.numel() * t.element_size() for t in (self.noise, self.triggers) if t is not None)

    # -- invariants -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check shapes, dtypes, the noise budget and the trigger ids.

        Raises:
            DataError: an invariant does not hold (the message says which).
        """
        n = len(self.ids)
        if len(set(self.ids)) != n:
            raise DataError("protected dataset has duplicate sample ids")
        if self.noise is not None:
            self._validate_noise(self.noise, n)
        if self.triggers is not None:
            self._validate_triggers(self.triggers, n)

    def _validate_noise(self, noise: Tensor, n: int) -> None:
        if self.epsilon is None or not 0 < self.epsilon <= 1:
            raise DataError(f"noise needs an epsilon in (0, 1], got {self.epsilon}")
        if noise.dtype not in (torch.int8, torch.int16) or noise.dim() != 4 or len(noise) != n:
            raise DataError(f"noise must be int8/int16 (N={n}, C, H, W), got {noise.dtype} {tuple(noise.shape)}")
        units = noise_units(self.epsilon)
        peak = int(noise.abs().max()) if noise.numel() else 0
        if peak > units:
            raise DataError(f"noise reaches {peak}/255, over its budget epsilon = {units}/255")

    def _validate_triggers(self, trig: Tensor, n: int) -> None:
        if trig.dtype != torch.int64 or trig.dim() != 2 or len(trig) != n:
            raise DataError(f"triggers must be int64 (N={n}, k), got {trig.dtype} {tuple(trig.shape)}")
        vocab = self.source.get("vocab_size")
        if trig.numel() and (int(trig.min()) < FIRST_WORD_ID or (vocab is not None and int(trig.max()) >= vocab)):
            raise DataError(
                f"trigger ids must be real words in [{FIRST_WORD_ID}, {vocab}), got [{int(trig.min())}, {int(trig.max())}]"
            )

    def check_source(self, dataset: MultimodalDataset) -> None:
        """Raise unless ``dataset`` is exactly the clean data this protection was computed for.

        Raises:
            DataError: other ids, other data, or other vocabulary (the message says which).
        """
        if sorted(dataset.ids) != sorted(self.ids):
            raise DataError(
                f"protection of {self.source.get('name')!r} ({len(self)} pairs) does not match dataset "
                f"{dataset.name!r} ({len(dataset)} pairs): the sample ids differ"
            )
        ordered = dataset.subset(self.ids) if dataset.ids != self.ids else dataset
        want = self.source.get("data_sha256")
        if want is not None and data_fingerprint(ordered) != want:
            raise DataError(
                f"protection of {self.source.get('name')!r} was computed for other data than {dataset.name!r} "
                "(same ids, different images or captions): regenerate it for this dataset"
            )

    # -- as a dataset view -------------------------------------------------------------------------
    def apply(self, dataset: MultimodalDataset, *, check: bool = True) -> MultimodalDataset:
        """The protected copy of ``dataset``: noisy images (clipped to [0, 1]) and triggered captions.

        Args:
            dataset: the clean pairs this protection was computed for (rows matched by id).
            check: verify first that ``dataset`` is exactly the source data (`check_source`).

        Returns:
            A new dataset with the same ids and order; ``captions`` get the trigger words in front.

        Raises:
            DataError: a different dataset, or a trigger longer than the free caption budget.
        """
        if check:
            self.check_source(dataset)
        pos = dataset.positions(self.ids)
        inputs: dict[str, Tensor] = {}
        if self.noise is not None:
            images = dataset.inputs["image"].clone()
            images[pos] = add_noise(images[pos], self.noise)
            inputs["image"] = images
        if self.triggers is not None:
            text = dataset.inputs["text"].clone()
            text[pos] = prepend_triggers(text[pos], self.triggers)
            inputs["text"] = text
        out = dataset.with_inputs(**inputs)
        out.name = f"{dataset.name}+{self.method}"
        if self.triggers is not None and dataset.captions is not None and dataset.vocab is not None:
            out.captions = self._triggered_captions(dataset, pos)
        return out

    def _triggered_captions(self, dataset: MultimodalDataset, pos: Tensor) -> list[str]:
        captions = list(dataset.captions or [])
        vocab = dataset.vocab or []
        for row, trig in zip(pos.tolist(), (self.triggers if self.triggers is not None else []), strict=True):
            captions[row] = " ".join([*(vocab[i] for i in trig.tolist()), captions[row]])
        return captions

    # -- files ------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the protection to ``folder`` (created if needed), crash-atomically.

        Returns:
            The manifest that was written.
        """
        tensors = {k: v for k, v in (("noise", self.noise), ("triggers", self.triggers)) if v is not None}
        blobs = {TENSORS: tensors_to_bytes(tensors), IDS: (json.dumps(self.ids) + "\n").encode()}
        manifest = {
            "format": FORMAT,
            "method": self.method,
            "config": self.config,
            "epsilon": self.epsilon,
            "trigger_len": self.trigger_len,
            "n": len(self),
            "source": self.source,
            "source_sha256": sha256_bytes(canonical_json(self.source).encode()),
            "stats": self.stats,
            **(extra or {}),
        }
        return commit_folder(folder, blobs.items(), manifest, owned=(TENSORS, IDS))

    @classmethod
    def load(cls, folder: str | Path) -> ProtectedDataset:
        """Load and verify a protection written by `save`.

        Raises:
            CheckpointError: missing, unreadable, truncated or tampered-with files or manifest, or
                contents that break an invariant (noise over budget, invalid trigger ids).
        """
        folder = Path(folder)
        manifest = read_protected_manifest(folder)
        files = manifest["files"]
        tensors = _load_tensors(folder, files)
        ids = json.loads(_verified_bytes(folder, IDS, files))
        try:
            return cls(
                ids=ids,
                noise=tensors.get("noise"),
                triggers=tensors.get("triggers"),
                epsilon=manifest.get("epsilon"),
                method=manifest["method"],
                config=manifest.get("config", {}),
                source=manifest["source"],
                stats=manifest.get("stats", {}),
            )
        except (DataError, KeyError, TypeError) as e:
            raise CheckpointError(f"protection in {folder} is invalid: {e}") from e


def read_protected_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and validate the manifest of a saved protection (no tensors are read).

    Raises:
        CheckpointError: missing or unreadable manifest, another format, or an edited source identity.
    """
    path = Path(folder) / MANIFEST
    manifest = read_json_manifest(path, FORMAT, "protected dataset")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("source"), dict):
        raise CheckpointError(f"{path} lists no files or no source dataset")
    if sha256_bytes(canonical_json(manifest["source"]).encode()) != manifest.get("source_sha256"):
        raise CheckpointError(
            f"the source-dataset identity in {path} does not match its SHA-256: the manifest was edited"
        )
    return manifest


def _verified_bytes(folder: Path, name: str, files: dict[str, str]) -> bytes:
    if name not in files:
        raise CheckpointError(f"{folder / MANIFEST} lists no {name}")
    path = resolve_file(folder, name, files[name])
    if not path.is_file():
        raise CheckpointError(f"protection file {path} is missing")
    data = path.read_bytes()
    if sha256_bytes(data) != files[name]:
        raise CheckpointError(
            f"protection file {path} does not match its SHA-256: truncated, corrupted or tampered with"
        )
    return data


def _load_tensors(folder: Path, files: dict[str, str]) -> dict[str, Tensor]:
    data = _verified_bytes(folder, TENSORS, files)
    try:
        return st_load(data)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {folder / TENSORS}: {e}") from e


__all__ = [
    "FIRST_WORD_ID",
    "ProtectedDataset",
    "add_noise",
    "caption_lengths",
    "dataset_source",
    "noise_dtype",
    "noise_units",
    "prepend_triggers",
    "quantize_noise",
    "read_protected_manifest",
    "trigger_budget",
]
