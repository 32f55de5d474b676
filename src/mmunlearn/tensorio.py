"""Tensors to bytes with safetensors (never pickle)."""

from __future__ import annotations

from safetensors.torch import save as st_save
from torch import Tensor


def tensors_to_bytes(tensors: dict[str, Tensor]) -> bytes:
    """Serialise tensors with safetensors (contiguous copies, never pickle)."""
    return st_save({k: v.contiguous() for k, v in tensors.items()})
