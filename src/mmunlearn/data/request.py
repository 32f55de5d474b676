"""`ForgetRequest`: which samples, and which of their modalities, a model must forget."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..fileio import sha256_bytes
from .concepts import naming, normalise_phrase
from .core import MultimodalDataset


@dataclass(frozen=True)
class ForgetRequest:
    """A deletion request against a training set.

    Attributes:
        ids: the samples to forget (the unlearn set U).
        modalities: which of their modalities to forget: ``{"image"}`` for visual unlearning, every
            modality of the dataset for full deletion.
        reason: free text recorded in the receipt (e.g. "GDPR art. 17 request #42").
        concept: the concept whose pairs these are, for a concept request (the metrics then measure
            whether the model still recognises it).
    """

    ids: tuple[str, ...]
    modalities: frozenset[str] = field(default_factory=lambda: frozenset({"image"}))
    reason: str = ""
    concept: str | None = None

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def random_fraction(
        cls,
        train: MultimodalDataset,
        fraction: float,
        seed: int,
        modalities: Iterable[str] = ("image",),
        reason: str = "",
    ) -> ForgetRequest:
        """A seeded random ``fraction`` of the training samples."""
        if not 0 < fraction < 1:
            raise DataError(f"forget fraction must be in (0, 1), got {fraction}")
        n = max(1, round(fraction * len(train)))
        pick = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
        return cls(tuple(train.ids[i] for i in pick), frozenset(modalities), reason)

    @classmethod
    def identities(
        cls, train: MultimodalDataset, names: Iterable[str], modalities: Iterable[str] = ("image",), reason: str = ""
    ) -> ForgetRequest:
        """Every sample whose identity group (font, writer, voice...) is one of ``names``."""
        wanted = set(names)
        known = set(train.group_names())
        unknown = sorted(wanted - known)
        if unknown:
            raise DataError(f"unknown identity {unknown}; known identities: {sorted(known)}")
        ids = tuple(sid for i, sid in enumerate(train.ids) if any(train.groups[k][i] in wanted for k in train.groups))
        return cls(ids, frozenset(modalities), reason)

    @classmethod
    def one_class(
        cls, train: MultimodalDataset, label: int, modalities: Iterable[str] = ("image",), reason: str = ""
    ) -> ForgetRequest:
        """Every training sample of class ``label``."""
        if train.labels is None or not 0 <= label < (train.num_classes or 0):
            raise DataError(
                f"class {label} is not a class of {train.name!r} (classes 0..{(train.num_classes or 1) - 1})"
            )
        ids = tuple(sid for sid, y in zip(train.ids, train.labels.tolist(), strict=True) if y == label)
        return cls(ids, frozenset(modalities), reason)

    @classmethod
    def concept_pairs(
        cls, train: MultimodalDataset, concept: str, modalities: Iterable[str] | None = None, reason: str = ""
    ) -> ForgetRequest:
        """Every pair whose caption names ``concept`` (see `mmunlearn.data.concepts.naming`); by default
        every modality of the pairs is forgotten (the association itself).

        Raises:
            DataError: no captions, or no caption names the concept.
        """
        ids = tuple(train.ids[i] for i in naming(train, concept))
        mods = frozenset(train.modalities if modalities is None else modalities)
        return cls(ids, mods, reason, normalise_phrase(concept))

    # -- use ------------------------------------------------------------------------------------
    def validate(self, train: MultimodalDataset, model_modalities: Iterable[str] | None = None) -> None:
        """Check the request against a training set (and a model's modalities) before any work starts.

        Raises:
            DataError: empty request, duplicate ids, or a modality the data or the model lacks.
            UnknownIdError: ids not in the training set.
        """
        if not self.ids:
            raise DataError("the forget request is empty: it names no sample")
        if len(set(self.ids)) != len(self.ids):
            raise DataError("the forget request names some ids twice")
        if not self.modalities:
            raise DataError("the forget request names no modality")
        have = set(train.modalities) & set(model_modalities if model_modalities is not None else train.modalities)
        lacking = sorted(self.modalities - have)
        if lacking:
            raise DataError(f"cannot forget modality {lacking}: the model/data only have {sorted(have)}")
        train.positions(self.ids)
        if len(self.ids) == len(train):
            raise DataError("the forget request covers the whole training set: nothing would be retained")

    def is_full_deletion(self, train: MultimodalDataset) -> bool:
        """Whether every modality of the samples is to be forgotten (the samples leave entirely)."""
        return set(train.modalities) <= self.modalities

    def unlearn_set(self, train: MultimodalDataset) -> MultimodalDataset:
        """U: the requested samples, with all their data (an unlearner needs what it must forget)."""
        return train.subset(self.ids, name=f"{train.name}/unlearn")

    def retain_set(self, train: MultimodalDataset) -> MultimodalDataset:
        """R: every other training sample."""
        return train.without(self.ids, name=f"{train.name}/retain")

    def gold_standard_set(self, train: MultimodalDataset) -> MultimodalDataset:
        """What a model retrained from scratch may train on: R, plus U with the forgotten modalities missing.

        For full deletion this is R alone; for visual unlearning U's audio stays, since it was never
        asked to be forgotten.
        """
        if self.is_full_deletion(train):
            return self.retain_set(train)
        return train.with_missing(self.ids, self.modalities)

    def ids_sha256(self) -> str:
        """SHA-256 of the sorted ids (stored in receipts instead of the ids themselves)."""
        return sha256_bytes("\n".join(sorted(self.ids)).encode())

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (ids hashed)."""
        out: dict[str, object] = {
            "n_ids": len(self.ids),
            "ids_sha256": self.ids_sha256(),
            "modalities": sorted(self.modalities),
            "reason": self.reason,
        }
        return out if self.concept is None else {**out, "concept": self.concept}
