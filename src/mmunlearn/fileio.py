"""Small file helpers shared by the dataset cache and checkpoints: atomic writes and SHA-256."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import CheckpointError


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces, so equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file: after a crash there is either the old file or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json_manifest(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """Read a JSON manifest and check its ``format`` field.

    Args:
        path: the manifest file.
        fmt: the expected ``format`` value.
        what: what the folder should hold, for the messages (``"checkpoint"``, ``"protected dataset"``).

    Raises:
        CheckpointError: a missing or unreadable file, or another format.
    """
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a {what}: {path.name} not found")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"unreadable {what} manifest {path}: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise CheckpointError(f"{path} is not an {fmt} manifest")
    return manifest
