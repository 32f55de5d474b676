"""Small file helpers shared by checkpoints, protections, dataset caches and reports.

Atomic writes that honour the umask, SHA-256, and the one folder-commit protocol (`commit_folder`):
a folder of data files plus a ``manifest.json`` that lists each file's SHA-256 is, at every instant
of a save (a kill included), either the previous complete state or the new complete one.

The protocol, for each save:

1. every data file is written (temporary file, fsync, rename) under a *staged* name that carries its
   hash, ``model.<sha16>.safetensors``, never over a file the current manifest may point to;
2. ``manifest.json`` is replaced atomically: the commit point (the folder is fsynced before and after);
3. each staged file is renamed to its plain name (``model.safetensors``);
4. files the new manifest does not list (old names, stale staged or temporary files) are deleted.

Readers find a listed file with `resolve_file`: the staged name for the listed hash if it is there, else
the plain name. Before step 2 the old manifest's hashes name no staged file of this save, so readers see
the old files; after it they see the new ones, staged or renamed. Old manifests read unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import CheckpointError

MANIFEST = "manifest.json"
STAGED_HASH_LEN = 16
_RENAME_EXCHANGE = 2  # renameat2 flag (Linux)
_AT_FDCWD = -100


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


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, key-sorted JSON text with a final newline (how every JSON file is written)."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


# -- single files --------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make the renames and deletions in ``folder`` durable (a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, written and fsynced, mode from the umask, renamed to ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file: after a crash there is either the old file or the new one.
    The file gets the mode a plain ``open`` would (0666 less the umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_file(path, data)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, json_bytes(obj))


# -- folders: the commit protocol ----------------------------------------------------------------------
def staged_name(name: str, digest: str) -> str:
    """Where a save writes ``name`` before its commit: ``model.safetensors`` -> ``model.<sha16>.safetensors``."""
    stem, dot, ext = name.rpartition(".")
    tag = digest[:STAGED_HASH_LEN]
    return f"{stem}.{tag}.{ext}" if dot and stem else f"{name}.{tag}"


def resolve_file(folder: Path, name: str, digest: str) -> Path:
    """The file that holds listed file ``name`` with hash ``digest``: its staged name if present, else ``name``."""
    staged = folder / staged_name(name, str(digest))
    return staged if staged.is_file() else folder / name


def listed_files(folder: Path) -> dict[str, str]:
    """Name -> SHA-256 of the files the manifest of ``folder`` lists ({} without a readable manifest)."""
    try:
        files = json.loads((folder / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def commit_folder(
    folder: str | os.PathLike[str],
    blobs: Iterable[tuple[str, bytes]],
    manifest: dict[str, Any],
    *,
    owned: Iterable[str] = (),
) -> dict[str, Any]:
    """Save ``blobs`` and a manifest listing their SHA-256 into ``folder``, crash-atomically.

    Args:
        folder: the folder (created if needed); files it holds that are not ours are left alone.
        blobs: (file name, bytes) pairs, consumed one at a time (a generator keeps one blob in memory).
        manifest: the manifest's other fields; its ``files`` field is set here.
        owned: plain names this kind of folder may hold: removed when the new manifest does not list them
            (with the old manifest's files, and the staged and temporary files of all of these).

    Returns:
        The manifest written (with ``files``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, data in blobs:
        files[name] = sha256_bytes(data)
        _write_file(folder / staged_name(name, files[name]), data)
    known = {*listed_files(folder), *owned, *files}
    fsync_dir(folder)
    written = {**manifest, "files": files}
    _write_file(folder / MANIFEST, json_bytes(written))  # the commit point
    fsync_dir(folder)
    _finish(folder, files, known)
    return written


def finish_commit(folder: str | os.PathLike[str]) -> None:
    """Complete the steps after the commit point of a save that was killed there (a no-op otherwise).

    Afterwards every file the manifest lists is under its plain name, so readers that do not know the
    protocol (a user's script, `safetensors.torch.load_file`) read the committed files.
    """
    folder = Path(folder)
    files = listed_files(folder)
    if files:
        _finish(folder, files, files)


def is_staged(name: str) -> bool:
    """Whether ``name`` is a staged file of a save (``model.<sha16>.safetensors``)."""
    return re.fullmatch(rf".+\.[0-9a-f]{{{STAGED_HASH_LEN}}}(\.[^.]+)?", name) is not None


def _finish(folder: Path, files: dict[str, str], known: Iterable[str]) -> None:
    """Steps 3 and 4 of the protocol: staged files to their plain names, unlisted ones deleted."""
    for name, digest in files.items():
        _settle(folder, name, digest)
    _remove_unlisted(folder, files, known)
    fsync_dir(folder)


def _settle(folder: Path, name: str, digest: str) -> None:
    """Rename a committed staged file to its plain name (nothing to do if another save already did)."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(folder / staged_name(name, digest), folder / name)


def _remove_unlisted(folder: Path, files: dict[str, str], known: Iterable[str]) -> None:
    """Delete the plain, staged and temporary files of ``known`` names that ``files`` does not keep."""
    patterns = [_name_pattern(name) for name in {*known, MANIFEST}]
    keep = {*files, MANIFEST}
    for entry in sorted(os.listdir(folder)):
        if entry not in keep and any(p.fullmatch(entry) for p in patterns) and (folder / entry).is_file():
            (folder / entry).unlink(missing_ok=True)


def _name_pattern(name: str) -> re.Pattern[str]:
    """Matches ``name``, its staged names and the temporary files of either."""
    stem, dot, ext = name.rpartition(".")
    tag = rf"\.[0-9a-f]{{{STAGED_HASH_LEN}}}"
    core = rf"{re.escape(stem)}(?:{tag})?\.{re.escape(ext)}" if dot and stem else rf"{re.escape(name)}(?:{tag})?"
    return re.compile(rf"{core}|\.{core}\..+\.tmp")


# -- folders: whole-folder replacement -----------------------------------------------------------------
def staging_folder(target: Path) -> Path:
    """A new empty sibling of ``target`` to build its next version in (leftovers of killed saves removed).

    The folder gets the mode a plain ``mkdir`` would (0777 less the umask).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("staging", "old"):
        for stale in target.parent.glob(f".{glob.escape(target.name)}.{kind}.*"):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging."))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def replace_folder(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` at ``target``, which becomes the new folder in one step.

    ``staging`` must be a sibling of ``target``. An existing ``target`` is exchanged with ``staging``
    atomically where the system can (Linux ``renameat2``), else moved aside first; the old one is then
    deleted.
    """
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)
    else:
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.rename(target, aside / target.name)
        os.rename(staging, target)
        shutil.rmtree(aside)
    fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


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
