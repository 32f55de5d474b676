"""The bounded, checksummed on-disk cache of decoded layouts.

One folder per (absolute source path, layout, decoding options), under
``<data dir>/layouts/<key>/`` (`cache_dir`)::

    images.npy   uint8 (U, 3, S, S)      one row per distinct image file
    video.npy    uint8 (V, T, 3, S, S)   one row per frame folder (audio-visual layouts)
    audio.npy    float32 (A, 40, F)      one row per sound file (audio-visual layouts)
    media.json   the file (or folder) of each row, and the rows skipped as bad, with the error message
    manifest.json  format, source, layout, options, source fingerprint, SHA-256 of each file above

The first pass decodes file by file into preallocated ``.npy`` files through short-lived memory maps of
`CHUNK` rows, so its memory does not grow with the number of files. The folder is built beside its
final place and swapped in whole (`mmunlearn.fileio.replace_folder`). A load reads the rows it needs
with plain file reads (`read_rows`), so each is held in memory once. A load verifies every checksum
and the source fingerprint (the size and modification time of every annotation and media file) and
rebuilds a stale or corrupt cache. The cache root is bounded: `evict` deletes the least recently used
layout caches while the root holds more than ``$MMUNLEARN_LAYOUT_CACHE_GB`` gigabytes (default 20).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...fileio import (
    MANIFEST,
    atomic_write_json,
    canonical_json,
    json_bytes,
    replace_folder,
    sha256_file,
    staging_folder,
)
from ...runtime import progress as show_progress
from ..store import default_data_dir, verify_cache
from .decode import BadMedia, audio_frames, decode_frames, decode_image, decode_sound
from .spec import LayoutOptions, Plan

log = logging.getLogger(__name__)

FORMAT = "mmunlearn-layout-cache/1"
LIMIT_ENV = "MMUNLEARN_LAYOUT_CACHE_GB"
DEFAULT_LIMIT_GB = 20.0
CHUNK = 256
"""Rows per memory-map window of the first pass."""
MEDIA = ("image", "video", "audio")
FILES = {"image": "images.npy", "video": "video.npy", "audio": "audio.npy"}


@dataclass(frozen=True)
class MediaTable:
    """The distinct media of a plan, in row order: image files, frame folders, sound files."""

    image: tuple[str, ...]
    video: tuple[str, ...]
    audio: tuple[str, ...]

    @staticmethod
    def of(plan: Plan) -> MediaTable:
        """The media the plan's items refer to, each once, in order of first use."""
        cols: dict[str, dict[str, None]] = {m: {} for m in MEDIA}
        for it in plan.items:
            for m, rel in (("image", it.image), ("video", it.video), ("audio", it.audio)):
                if rel is not None:
                    cols[m][rel] = None
        return MediaTable(*(tuple(cols[m]) for m in MEDIA))

    def rows(self, modality: str) -> tuple[str, ...]:
        """The files (or folders) of one modality, in row order."""
        return tuple(getattr(self, modality))


def decoding_options(options: LayoutOptions) -> dict[str, object]:
    """The options the cached tensors depend on (not the seed, nor ``skip_bad``)."""
    d = asdict(options)
    return {k: d[k] for k in ("image_size", "frames", "clip_seconds")}


def cache_dir(path: Path, layout: str, options: LayoutOptions, data_dir: str | os.PathLike[str] | None) -> Path:
    """``<data dir>/layouts/<24 hex of SHA-256(absolute path, layout, decoding options)>``."""
    ident = canonical_json({"path": str(path.resolve()), "layout": layout, "options": decoding_options(options)})
    return cache_root(data_dir) / hashlib.sha256(ident.encode()).hexdigest()[:24]


def cache_root(data_dir: str | os.PathLike[str] | None) -> Path:
    """The folder of every layout cache."""
    return default_data_dir(data_dir) / "layouts"


def source_fingerprint(plan: Plan) -> str:
    """SHA-256 of (path, size, mtime) of the plan's annotation and media files ("-" for a missing file)."""
    files = set(plan.sources)
    for it in plan.items:
        files.update(f for f in (it.image, it.audio) if f is not None)
    for frames in plan.frames.values():
        files.update(frames)
    h = hashlib.sha256()
    for rel in sorted(files):
        try:
            st = os.stat(plan.root / rel)
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\t-\n".encode())
    return h.hexdigest()


def cache_problem(folder: Path, fingerprint: str, table: MediaTable) -> str | None:
    """Why the cache in ``folder`` cannot be used for these sources, or None when it can."""
    problem = verify_cache(folder)
    if problem is not None:
        return problem
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')!r} is not {FORMAT}"
    if manifest.get("source_fingerprint") != fingerprint:
        return "the source files changed (sizes or modification times)"
    media = json.loads((folder / "media.json").read_text())
    if any(list(table.rows(m)) != media["rows"].get(m, []) for m in MEDIA):
        return "the media listed by the annotation files changed"
    return None


# -- the first pass ---------------------------------------------------------------------------------------
class RowWriter:
    """Writes the rows of one preallocated ``.npy`` file in order, through memory maps of `CHUNK` rows."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        head = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset = int(head.offset)
        del head
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.buffer = np.zeros((min(CHUNK, shape[0]), *shape[1:]), dtype=dtype)
        self.start = self.fill = 0

    def append(self, row: np.ndarray | None) -> None:
        """Write the next row (None: a row of zeros, for a skipped file)."""
        self.buffer[self.fill] = 0 if row is None else row
        self.fill += 1
        if self.fill == len(self.buffer):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to the file through a memory map of just those rows."""
        if not self.fill:
            return
        row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        window = np.memmap(self.path, dtype=self.dtype, mode="r+", offset=self.offset + self.start * row_bytes,
                           shape=(self.fill, *self.shape[1:]))  # fmt: skip
        window[:] = self.buffer[: self.fill]
        window.flush()
        del window
        self.start += self.fill
        self.fill = 0


def _decoders(plan: Plan, options: LayoutOptions) -> dict[str, Callable[[str], np.ndarray]]:
    """modality -> (relative path -> decoded row)."""
    root, size = plan.root, options.image_size

    def image(rel: str) -> np.ndarray:
        if rel in plan.frames and not plan.frames[rel]:
            raise BadMedia(root / rel, "frame folder is missing or holds no image")
        return decode_image(root / rel, size)

    def video(rel: str) -> np.ndarray:
        if not plan.frames.get(rel):
            raise BadMedia(root / rel, "frame folder is missing or holds no image")
        return decode_frames(root, plan.frames[rel], options.frames, size)

    return {"image": image, "video": video, "audio": lambda rel: decode_sound(root / rel, options.clip_seconds)}


def _row_shape(modality: str, options: LayoutOptions) -> tuple[tuple[int, ...], type]:
    s = options.image_size
    return {
        "image": ((3, s, s), np.uint8),
        "video": ((options.frames, 3, s, s), np.uint8),
        "audio": ((40, audio_frames(options.clip_seconds)), np.float32),
    }[modality]


def expected_bytes(table: MediaTable, options: LayoutOptions) -> int:
    """Bytes of the tensors of a cache of ``table``."""
    total = 0
    for m in MEDIA:
        shape, dtype = _row_shape(m, options)
        total += len(table.rows(m)) * int(np.prod(shape)) * np.dtype(dtype).itemsize
    return total


def _decode_into(folder: Path, table: MediaTable, decoders: dict[str, Callable[[str], np.ndarray]],
                 options: LayoutOptions, bar: object) -> dict[str, str]:  # fmt: skip
    """Decode every row of ``table`` into the ``.npy`` files of ``folder``; returns skipped row -> message.

    Raises:
        DataError: a bad file when ``options.skip_bad`` is False (the message starts with its path).
    """
    skipped: dict[str, str] = {}
    for m in MEDIA:
        rels = table.rows(m)
        if not rels:
            continue
        shape, dtype = _row_shape(m, options)
        writer = RowWriter(folder / FILES[m], (len(rels), *shape), np.dtype(dtype))
        for rel in rels:
            try:
                writer.append(decoders[m](rel))
            except BadMedia as e:
                if not options.skip_bad:
                    raise DataError(str(e)) from e
                skipped[rel] = str(e)
                writer.append(None)
            bar.update()  # type: ignore[attr-defined]
        writer.flush()
    return skipped


def build_cache(folder: Path, plan: Plan, table: MediaTable, options: LayoutOptions, ident: dict[str, object],
                progress: bool) -> None:  # fmt: skip
    """Decode the plan's media into a new cache folder and swap it in at ``folder``.

    Raises:
        DataError: a bad media file when ``options.skip_bad`` is False.
    """
    staging = staging_folder(folder)
    total = sum(len(table.rows(m)) for m in MEDIA)
    bar = show_progress(total=total, desc=f"decoding {plan.root.name}", unit="file", enabled=progress)
    try:
        skipped = _decode_into(staging, table, _decoders(plan, options), options, bar)
        (staging / "media.json").write_bytes(json_bytes({"rows": {m: list(table.rows(m)) for m in MEDIA},
                                                         "skipped": skipped}))  # fmt: skip
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
        atomic_write_json(staging / MANIFEST, {"format": FORMAT, **ident, "files": files})
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()


def read_media(folder: Path) -> tuple[dict[str, Path], dict[str, list[str]], dict[str, str]]:
    """The tensor file of each modality, the row files of each modality and the skipped rows of a verified cache."""
    media = json.loads((folder / "media.json").read_text())
    files = {m: folder / FILES[m] for m in MEDIA if (folder / FILES[m]).is_file()}
    return files, media["rows"], media["skipped"]


def read_rows(path: Path, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (in that order, repeats allowed) of a ``.npy`` file, read with plain file reads.

    Plain reads, not a memory map: the file's pages stay in the page cache instead of the process's
    resident memory, so a load holds each row once.
    """
    head = np.load(path, mmap_mode="r")
    offset, shape, dtype = int(head.offset), head.shape, head.dtype
    del head
    out = np.empty((len(rows), *shape[1:]), dtype=dtype)
    flat = out.reshape(len(rows), -1).view(np.uint8)
    row_bytes = flat.shape[1]
    with open(path, "rb") as f:
        for pos in np.argsort(rows, kind="stable"):
            f.seek(offset + int(rows[pos]) * row_bytes)
            if f.readinto(flat[pos]) != row_bytes:
                raise DataError(f"{path}: truncated (row {int(rows[pos])} of {shape[0]})")
    return out


def touch(folder: Path) -> None:
    """Mark a cache as just used (its manifest's modification time orders `evict`)."""
    with contextlib.suppress(OSError):
        os.utime(folder / MANIFEST)


# -- the bound ------------------------------------------------------------------------------------------
def cache_limit_bytes() -> int:
    """``$MMUNLEARN_LAYOUT_CACHE_GB`` (default 20) in bytes (1 GB = 10**9 bytes).

    Raises:
        DataError: the variable is not a non-negative number.
    """
    raw = os.environ.get(LIMIT_ENV, "") or str(DEFAULT_LIMIT_GB)
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not gb >= 0:
        raise DataError(f"{LIMIT_ENV}={raw!r}; expected a non-negative number of gigabytes")
    return int(gb * 1e9)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _last_used(folder: Path) -> float:
    manifest = folder / MANIFEST
    return (manifest if manifest.is_file() else folder).stat().st_mtime


def evict(root: Path, keep: Path, reserve: int = 0) -> list[Path]:
    """Delete the least recently used caches under ``root`` (never ``keep``) until the root, plus
    ``reserve`` bytes about to be written, fits in `cache_limit_bytes`; returns the folders deleted."""
    if not root.is_dir():
        return []
    limit = cache_limit_bytes()
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: _folder_bytes(p) for p in folders}
    total = sum(sizes.values()) + reserve
    gone = []
    for p in sorted((p for p in folders if p != keep), key=_last_used):
        if total <= limit:
            break
        shutil.rmtree(p, ignore_errors=True)
        total -= sizes[p]
        gone.append(p)
    if gone:
        log.info("layout cache over %s GB: removed %d least recently used cache(s)", limit / 1e9, len(gone))
    if total > limit:
        log.warning("the layout cache %s needs %.2f GB, more than %s=%s GB", keep, total / 1e9, LIMIT_ENV, limit / 1e9)
    return gone
