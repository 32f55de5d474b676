"""Core data types: `Sample`, `MultimodalDataset` and the builder output `SplitData`.

A dataset is tensor-backed: one stacked tensor per modality, so that a batch is a cheap index
operation and the training loop is as fast as a plain PyTorch loop. Modalities that are *missing* for
a sample are zero tensors plus a presence mask (``present[modality]``) that models see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import DataError, UnknownIdError

MODALITIES = ("image", "audio", "text", "video")


@dataclass(frozen=True)
class Sample:
    """One sample.

    Attributes:
        id: stable string id, unique within its dataset.
        inputs: modality -> tensor (``image``: (C, H, W) float in [0, 1]; ``audio``: (n_mels, T) log-mel;
            ``text``: (L,) int64 token ids, 0 = padding).
        present: modality -> whether that modality is present (False = missing, input is zeros).
        label: class label where the task has one.
        caption: the raw caption where there is one.
        groups: identity groups, e.g. ``{"font": "DejaVuSans", "voice": "en+m3"}``.
    """

    id: str
    inputs: dict[str, Tensor]
    present: dict[str, bool]
    label: int | None = None
    caption: str | None = None
    groups: dict[str, str] = field(default_factory=dict)


@dataclass
class SplitData:
    """What a dataset builder returns for one split (train, val or test).

    Attributes:
        ids: unique sample ids, length N.
        tensors: modality -> stacked tensor with N rows. Images are stored as uint8 (N, C, H, W);
            audio as float32 log-mel (N, n_mels, T); text as int64 token ids (N, L).
        labels: int64 (N,) or None.
        captions: N raw captions or None.
        groups: group kind -> N group names (e.g. ``{"font": [...], "voice": [...]}``).
    """

    ids: list[str]
    tensors: dict[str, Tensor]
    labels: Tensor | None = None
    captions: list[str] | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)


def check_finite(values: Tensor, modality: str, dataset: str) -> None:
    """Refuse floating-point inputs with NaN or inf values (integer inputs cannot hold them).

    Raises:
        DataError: ``modality 'image' of dataset 'x' contains NaN or inf values``.
    """
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise DataError(f"modality {modality!r} of dataset {dataset!r} contains NaN or inf values")


class MultimodalDataset:
    """An indexable, tensor-backed multimodal dataset.

    Args:
        ids: unique sample ids.
        inputs: modality -> tensor with ``len(ids)`` rows. uint8 images and videos are converted to float in [0, 1].
        labels: int64 labels (N,) or None.
        captions: raw captions or None.
        groups: group kind -> per-sample group names.
        present: modality -> bool (N,) presence mask; all True when omitted.
        num_classes: number of classes of ``labels`` (inferred when omitted).
        vocab: the word-level vocabulary of the ``text`` token ids, where there is text.
        name: a human-readable name, e.g. ``"av-digits/small/train"``.
    """

    def __init__(
        self,
        ids: Sequence[str],
        inputs: dict[str, Tensor],
        labels: Tensor | None = None,
        captions: Sequence[str] | None = None,
        groups: dict[str, list[str]] | None = None,
        present: dict[str, Tensor] | None = None,
        num_classes: int | None = None,
        vocab: Sequence[str] | None = None,
        name: str = "",
    ) -> None:
        self.ids: list[str] = list(ids)
        n = len(self.ids)
        if len(set(self.ids)) != n:
            raise DataError(f"dataset {name!r} has duplicate sample ids")
        self.inputs = {m: _as_float_image(t) if m in ("image", "video") else t for m, t in inputs.items()}
        for m, t in self.inputs.items():
            if m not in MODALITIES:
                raise DataError(f"unknown modality {m!r}; known modalities: {', '.join(MODALITIES)}")
            if t.shape[0] != n:
                raise DataError(f"modality {m!r} has {t.shape[0]} rows for {n} ids")
            check_finite(t, m, name)
        self.labels = labels
        self.captions = list(captions) if captions is not None else None
        self.groups = {k: list(v) for k, v in (groups or {}).items()}
        self.present = present or {m: torch.ones(n, dtype=torch.bool) for m in self.inputs}
        if num_classes is None and labels is not None and n:
            num_classes = int(labels.max()) + 1
        self.num_classes = num_classes
        self.vocab = list(vocab) if vocab is not None else None
        self.name = name
        self._pos = {sid: i for i, sid in enumerate(self.ids)}

    # -- basic protocol -------------------------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this dataset carries, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.inputs)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        return Sample(
            id=self.ids[i],
            inputs={m: t[i] for m, t in self.inputs.items()},
            present={m: bool(p[i]) for m, p in self.present.items()},
            label=int(self.labels[i]) if self.labels is not None else None,
            caption=self.captions[i] if self.captions is not None else None,
            groups={k: v[i] for k, v in self.groups.items()},
        )

    def __repr__(self) -> str:
        return f"MultimodalDataset({self.name!r}, n={len(self)}, modalities={self.modalities})"

    # -- ids ------------------------------------------------------------------------------------
    def positions(self, ids: Iterable[str]) -> Tensor:
        """Row positions of ``ids``.

        Raises:
            UnknownIdError: some ids are not in the dataset (the message shows the first few).
        """
        ids = list(ids)
        missing = [i for i in ids if i not in self._pos]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UnknownIdError(f"{len(missing)} id(s) not in dataset {self.name!r}: {shown}{more}")
        return torch.tensor([self._pos[i] for i in ids], dtype=torch.long)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._pos

    # -- views ----------------------------------------------------------------------------------
    def take(self, positions: Tensor, name: str | None = None) -> MultimodalDataset:
        """A new dataset made of the rows at ``positions`` (in that order)."""
        pos = positions.long()
        idx = pos.tolist()
        return MultimodalDataset(
            ids=[self.ids[i] for i in idx],
            inputs={m: t[pos] for m, t in self.inputs.items()},
            labels=self.labels[pos] if self.labels is not None else None,
            captions=[self.captions[i] for i in idx] if self.captions is not None else None,
            groups={k: [v[i] for i in idx] for k, v in self.groups.items()},
            present={m: p[pos] for m, p in self.present.items()},
            num_classes=self.num_classes,
            vocab=self.vocab,
            name=name if name is not None else self.name,
        )

    def subset(self, ids: Iterable[str], name: str | None = None) -> MultimodalDataset:
        """A view made of the samples with the given ids (in that order)."""
        return self.take(self.positions(ids), name)

    def without(self, ids: Iterable[str], name: str | None = None) -> MultimodalDataset:
        """The samples whose ids are not in ``ids``, in the dataset's order."""
        drop = set(ids)
        keep = torch.tensor([i for i, sid in enumerate(self.ids) if sid not in drop], dtype=torch.long)
        return self.take(keep, name)

    def with_missing(self, ids: Iterable[str], modalities: Iterable[str]) -> MultimodalDataset:
        """A copy in which ``modalities`` of the samples ``ids`` are missing: zero input, presence False.

        Raises:
            UnknownIdError: an id is not in the dataset.
            DataError: a modality the dataset does not carry.
        """
        pos = self.positions(ids)
        mods = list(modalities)
        for m in mods:
            if m not in self.inputs:
                raise DataError(f"dataset {self.name!r} has no modality {m!r}; it has {self.modalities}")
        inputs = dict(self.inputs)
        present = dict(self.present)
        for m in mods:
            inputs[m] = inputs[m].clone()
            inputs[m][pos] = 0
            present[m] = present[m].clone()
            present[m][pos] = False
        out = self.take(torch.arange(len(self)))
        out.inputs, out.present = inputs, present
        return out

    def with_inputs(self, **inputs: Tensor) -> MultimodalDataset:
        """A copy whose given modalities are replaced (same rows, same ids)."""
        out = self.take(torch.arange(len(self)))
        for m, t in inputs.items():
            if t.shape[0] != len(self):
                raise DataError(f"modality {m!r} has {t.shape[0]} rows for {len(self)} samples")
            check_finite(t, m, self.name)
            out.inputs[m] = t
        return out

    @staticmethod
    def concat(parts: Sequence[MultimodalDataset], name: str = "") -> MultimodalDataset:
        """Concatenate datasets with the same modalities (ids must stay unique)."""
        first = parts[0]
        return MultimodalDataset(
            ids=[i for p in parts for i in p.ids],
            inputs={m: torch.cat([p.inputs[m] for p in parts]) for m in first.inputs},
            labels=torch.cat([p.labels for p in parts]) if first.labels is not None else None,  # type: ignore[misc]
            captions=[c for p in parts for c in p.captions] if first.captions is not None else None,  # type: ignore[union-attr]
            groups={k: [g for p in parts for g in p.groups[k]] for k in first.groups},
            present={m: torch.cat([p.present[m] for p in parts]) for m in first.present},
            num_classes=first.num_classes,
            vocab=first.vocab,
            name=name or first.name,
        )

    # -- batches --------------------------------------------------------------------------------
    def batch(self, positions: Tensor) -> dict[str, Tensor]:
        """A batch as a flat dict of tensors.

        Returns:
            ``{modality: (B, ...) tensor}`` for each modality, ``"present_<modality>"``: bool (B,),
            ``"label"``: int64 (B,) where there are labels, ``"index"``: int64 (B,) row positions.
        """
        out: dict[str, Tensor] = {m: t[positions] for m, t in self.inputs.items()}
        for m, p in self.present.items():
            out[f"present_{m}"] = p[positions]
        if self.labels is not None:
            out["label"] = self.labels[positions]
        out["index"] = positions
        return out

    def full_batch(self) -> dict[str, Tensor]:
        """The whole dataset as one batch (see `batch`)."""
        return self.batch(torch.arange(len(self)))

    def group_names(self, kind: str | None = None) -> list[str]:
        """Sorted distinct group names, of one kind or of every kind."""
        kinds = [kind] if kind else list(self.groups)
        return sorted({g for k in kinds for g in self.groups.get(k, [])})


def _as_float_image(t: Tensor) -> Tensor:
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t


def from_split(
    split: SplitData, *, num_classes: int | None, vocab: Sequence[str] | None, name: str
) -> MultimodalDataset:
    """Wrap a builder's `SplitData` as a `MultimodalDataset`."""
    return MultimodalDataset(
        ids=split.ids,
        inputs=split.tensors,
        labels=split.labels,
        captions=split.captions,
        groups=split.groups,
        num_classes=num_classes,
        vocab=vocab,
        name=name,
    )


def data_fingerprint(dataset: MultimodalDataset) -> str:
    """SHA-256 of the ids, inputs, labels and presence masks of a dataset (detects a different data set)."""
    h = hashlib.sha256("\n".join(dataset.ids).encode())
    tensors = [dataset.inputs[m] for m in sorted(dataset.inputs)] + [
        dataset.present[m] for m in sorted(dataset.present)
    ]
    for t in [*tensors, *([dataset.labels] if dataset.labels is not None else [])]:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()
