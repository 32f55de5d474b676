"""The package version and the versions of the software that produced a result."""

from __future__ import annotations

import platform

import numpy as np
import torch

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """Versions stored in manifests, receipts and records."""
    return {
        "mmunlearn": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
