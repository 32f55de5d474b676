"""``clean``: no protection (the reference every protector is compared with)."""

from __future__ import annotations

from typing import ClassVar

from ..data.core import MultimodalDataset
from ..models import DualEncoder
from .base import PROTECTORS, Generated, ProtectConfig, Protector


@PROTECTORS.register("clean")
class Clean(Protector):
    """Leaves every pair unchanged: no noise, no trigger."""

    name: ClassVar[str] = "clean"
    paper: ClassVar[str] = "reference (unprotected data)"
    Config: ClassVar[type[ProtectConfig]] = ProtectConfig

    def generate(self, dataset: MultimodalDataset, surrogate: DualEncoder | None) -> Generated:
        """Nothing to compute."""
        return Generated()
