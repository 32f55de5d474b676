"""Output locations and text inputs, checked before any work starts.

Output folders and files must be what they claim (a folder, a file), writable, distinct from the
inputs, and must not hold another kind of artefact: every folder mmunlearn writes has a
``manifest.json`` whose ``format`` field names its kind, so a folder is never overwritten by a
command that writes something else. Text inputs (bench YAML, ids files) must be UTF-8 text.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .errors import ConfigError, DataError, MMUnlearnError
from .fileio import is_staged

MANIFEST = "manifest.json"
KINDS = {
    "mmunlearn-checkpoint/1": "a checkpoint",
    "mmunlearn-protected/1": "a protection",
    "mmunlearn-dataset/1": "a dataset cache",
    "mmunlearn-run/1": "the output of a forget run (a user's own model)",
}
"""Manifest ``format`` -> what the folder holds, for the messages."""
FORGET_RUN = "the output of a forget run"
TRAINED = "a trained checkpoint"

OWN_FILES = frozenset({
    MANIFEST, "model.safetensors", "train_state.safetensors", "metrics.json", "receipt.json",
    "protection.safetensors", "ids.json",
})  # fmt: skip
"""Files mmunlearn writes into an output folder (an unfinished save may hold them without a manifest)."""
WORK_DIR = ".work"
"""The subfolder where an unfinished ``forget`` / ``protect`` checkpoints (resumed on a re-run, removed when done)."""


@dataclass(frozen=True)
class Found:
    """What an output folder holds.

    Attributes:
        format: the ``format`` of its manifest (None: no manifest).
        what: the contents in words (``"a checkpoint"``), or None when empty or missing.
        manifest: the parsed manifest ({} without one).
        foreign: names of files mmunlearn did not write (only looked at without a manifest).
    """

    format: str | None = None
    what: str | None = None
    manifest: dict[str, object] | None = None
    foreign: tuple[str, ...] = ()


# -- paths ---------------------------------------------------------------------------------------------
def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` can be created or written: its nearest existing ancestor is a writable folder.

    Raises:
        ConfigError: an ancestor that is a file, or one this user may not write into.
    """
    path = Path(path)
    base = nearest_existing(path)
    if base != Path(os.path.abspath(path)) and not base.is_dir():
        raise ConfigError(f"{flag} {path}: {base} is a file, not a folder")
    folder = base if base.is_dir() else base.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {folder} is not writable")
    return path


def check_folder(path: str | os.PathLike[str], flag: str) -> Path:
    """An output folder: missing or a folder, and writable.

    Raises:
        ConfigError: a file, or a location this user cannot write.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder")
    return check_writable(path, flag)


def check_file(path: str | os.PathLike[str], flag: str) -> Path:
    """An output file: missing or a file, and writable.

    Raises:
        ConfigError: a folder, or a location this user cannot write.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file")
    check_writable(path, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path} is not writable")
    return path


def check_cache(
    root: str | os.PathLike[str], needed: list[Path], flag: str = "--data-dir", *, rebuild: bool = False
) -> None:
    """The dataset cache root: a folder, and writable when one of the ``needed`` builds is not there yet.

    A read-only cache that already holds every dataset a command reads is fine (unless ``rebuild``).

    Raises:
        ConfigError: a file, or a location this user cannot write while a dataset must be built.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{flag} {root} is a file, not a folder")
    unbuilt = [p for p in needed if rebuild or not (p / MANIFEST).is_file()]
    if unbuilt:
        base = nearest_existing(unbuilt[0])
        if not (base.is_dir() and os.access(base, os.W_OK | os.X_OK)):
            raise ConfigError(
                f"{flag} {root}: {base} is not a writable folder, and dataset {unbuilt[0].parent.name} must be built there"
            )


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


# -- what a folder holds -------------------------------------------------------------------------------
def inspect_folder(path: str | os.PathLike[str]) -> Found:
    """What the (existing or missing) output folder ``path`` holds."""
    path = Path(path)
    if not path.is_dir():
        return Found()
    manifest_file = path / MANIFEST
    if manifest_file.is_file():
        return _from_manifest(manifest_file)
    names = sorted(p.name for p in path.iterdir() if not _own_leftover(p.name))
    return Found(foreign=tuple(names))


def _own_leftover(name: str) -> bool:
    """A file of an mmunlearn save (also the hidden temporary file of an interrupted atomic write)."""
    temporary = name.startswith(".") and name.endswith(".tmp")
    return name in OWN_FILES or name == WORK_DIR or temporary or is_staged(name)


def _from_manifest(path: Path) -> Found:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Found(format="?", what=f"an unreadable {MANIFEST}", manifest={})
    fmt = str(manifest.get("format")) if isinstance(manifest, dict) else "?"
    what = KINDS.get(fmt, f"a manifest of format {fmt!r}")
    if fmt == "mmunlearn-checkpoint/1":
        prov = manifest.get("provenance") or {}
        what = FORGET_RUN if "unlearned" in prov else TRAINED
    return Found(format=fmt, what=what, manifest=manifest if isinstance(manifest, dict) else {})


def describe_found(path: str | os.PathLike[str], found: Found) -> str:
    """``"runs/x holds a checkpoint"`` or ``"runs/x holds files mmunlearn did not write (a, b)"``."""
    if found.what:
        return f"{path} holds {found.what}"
    shown = ", ".join(found.foreign[:3]) + (", ..." if len(found.foreign) > 3 else "")
    return f"{path} holds files mmunlearn did not write ({shown})"


def check_output_folder(
    path: str | os.PathLike[str],
    writes: str,
    *,
    flag: str = "--out",
    inputs: tuple[str | os.PathLike[str], ...] = (),
) -> Found:
    """Check an output folder before any work: a writable folder, not an input, no other kind of artefact.

    Args:
        path: the output folder.
        writes: the manifest ``format`` the command writes there.
        flag: the option's name, for the messages.
        inputs: folders the command reads (the output must be none of them, nor inside one).

    Returns:
        What the folder holds now (its ``format`` is ``writes`` or None); the caller decides whether an
        artefact of its own kind there is resumed, complete, or replaced (``--overwrite``).

    Raises:
        ConfigError: a file, an unwritable location, an input, files mmunlearn did not write, or an
            artefact of another kind.
    """
    check_folder(path, flag)
    for source in inputs:
        if Path(source).exists() and (inside(path, source) or inside(source, path)):
            raise ConfigError(f"{flag} {path} would overwrite the input {source}; choose another folder")
    found = inspect_folder(path)
    if found.foreign or found.format not in (None, writes):
        raise ConfigError(f"{describe_found(path, found)}; choose another folder (nothing was changed)")
    return found


def refuse_existing(path: str | os.PathLike[str], found: Found, flag: str = "--out") -> NoReturn:
    """Refuse to replace an artefact of the command's own kind that is not this run's.

    Raises:
        ConfigError: always, naming what is there and ``--overwrite``.
    """
    raise ConfigError(
        f"{describe_found(path, found)} that is not this run's; pass --overwrite to replace it, or choose another {flag}"
    )


def clear_output(path: str | os.PathLike[str], found: Found) -> None:
    """Delete an artefact's files (its manifest first) before it is replaced; other files stay."""
    folder = Path(path)
    listed = found.manifest.get("files", {}) if found.manifest else {}
    names = [MANIFEST, *(listed if isinstance(listed, dict) else {}), *sorted(OWN_FILES)]
    for name in dict.fromkeys(names):
        if "/" not in name and name not in ("", ".", ".."):
            (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / WORK_DIR, ignore_errors=True)  # an unfinished run's checkpoints are replaced too


# -- text inputs ---------------------------------------------------------------------------------------
def read_text_file(path: str | os.PathLike[str], what: str, error: type[MMUnlearnError] = DataError) -> str:
    """The UTF-8 text of an input file (bench YAML, ids file).

    Raises:
        ``error``: no such file, a folder, an unreadable file, or bytes that are not UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise error(f"{what} {path} not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from e
    if b"\x00" in data:
        raise error(f"{what} {path} is a binary file, not UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})") from e
