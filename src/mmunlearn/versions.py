"""The package version and the versions of the software that produced a result."""

from __future__ import annotations

import platform
from importlib.metadata import version

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """Versions stored in manifests, receipts and records (read from the installed metadata, no import)."""
    return {
        "mmunlearn": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
    }
