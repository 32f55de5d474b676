"""The on-disk cache of built-in datasets: build once, verify by checksum on every load, rebuild if bad.

Layout of one build, ``<data dir>/<name>/<size>-seed<seed>-v<version>/``::

    train.safetensors  val.safetensors  test.safetensors   # tensors (+ "label")
    train.json         val.json         test.json          # ids, captions, groups
    meta.json                                              # vocab, text length, provenance
    manifest.json                                          # SHA-256 of every file above, written last

A build is saved with the folder-commit protocol of `mmunlearn.fileio.commit_folder`, so a killed
build leaves the previous cache or the new one, never a mix; a cache whose files do not match its
manifest is reported and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from ..errors import DataError
from ..fileio import MANIFEST, commit_folder, json_bytes, listed_files, resolve_file, sha256_file
from ..tensorio import tensors_to_bytes
from .builder import DATASETS, SIZES, SPLITS, BuiltData, DatasetBuilder
from .core import MultimodalDataset, SplitData, from_split

log = logging.getLogger(__name__)
FORMAT = "mmunlearn-dataset/1"


@dataclass
class DatasetSplits:
    """A loaded built-in dataset.

    Attributes:
        name: registry name, e.g. ``"av-digits"``.
        size: ``"small"`` or ``"full"``.
        seed: generation seed.
        train, val, test: the three splits.
        vocab: word-level vocabulary where the set has text.
        text_len: token row length where the set has text.
        meta: builder provenance.
        path: the cache folder it was loaded from.
    """

    name: str
    size: str
    seed: int
    train: MultimodalDataset
    val: MultimodalDataset
    test: MultimodalDataset
    vocab: list[str] | None
    text_len: int | None
    meta: dict[str, object]
    path: Path

    def split(self, name: str) -> MultimodalDataset:
        """One split by name (train, val or test)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return getattr(self, name)


def default_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$MMUNLEARN_DATA``, else the user cache folder (``~/.cache/mmunlearn``)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("MMUNLEARN_DATA"):
        return Path(os.environ["MMUNLEARN_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mmunlearn"


def cache_path(name: str, size: str, seed: int, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the build of (name, size, seed) lives."""
    builder = DATASETS.get(name)
    version = getattr(builder, "version", 1)
    return default_data_dir(data_dir) / name / f"{size}-seed{seed}-v{version}"


def _validate(name: str, size: str, seed: int) -> DatasetBuilder:
    builder = DATASETS.create(name)
    if size not in SIZES:
        raise DataError(f"unknown dataset size {size!r}; sizes are {', '.join(SIZES)}")
    if seed < 0:
        raise DataError(f"seed must be non-negative, got {seed}")
    return builder


def verify_cache(path: Path) -> str | None:
    """Why the cache at ``path`` cannot be used, or None when every file matches its manifest."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return "no manifest (missing or partial build)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return f"unreadable manifest ({e})"
    for fname, digest in files.items():
        f = resolve_file(path, fname, digest)
        if not f.is_file():
            return f"{fname} is missing"
        if sha256_file(f) != digest:
            return f"{fname} does not match its checksum"
    return None


def build_dataset(
    name: str,
    size: str = "small",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Build (name, size, seed) into the cache unless a verified build is already there.

    Returns:
        The cache folder.

    Raises:
        UnknownNameError: unknown dataset name (lists the known ones).
        DataError: unknown size or negative seed.
    """
    builder = _validate(name, size, seed)
    path = cache_path(name, size, seed, data_dir)
    problem = "rebuild requested" if force else verify_cache(path)
    if problem is None:
        return path
    if path.exists():
        log.warning("dataset cache %s cannot be used: %s; rebuilding it", path, problem)
    built = builder.build(size, seed, progress=progress)
    _write_atomically(path, built, {"name": name, "size": size, "seed": seed, "version": builder.version})
    return path


def _write_atomically(path: Path, built: BuiltData, ident: dict[str, object]) -> None:
    """Save a build into ``path`` crash-atomically (one split's bytes in memory at a time)."""
    owned = [f"{split}.{ext}" for split in SPLITS for ext in ("safetensors", "json")] + ["meta.json"]
    commit_folder(path, _cache_blobs(built), {"format": FORMAT, **ident}, owned=owned)


def _cache_blobs(built: BuiltData) -> Iterator[tuple[str, bytes]]:
    """The files of a cache folder: each split's tensors and ids, then the vocabulary and provenance."""
    for split in SPLITS:
        data: SplitData = built.splits[split]
        tensors = dict(data.tensors)
        if data.labels is not None:
            tensors["label"] = data.labels
        yield f"{split}.safetensors", tensors_to_bytes(tensors)
        yield f"{split}.json", json_bytes({"ids": data.ids, "captions": data.captions, "groups": data.groups})
    yield "meta.json", json_bytes({"vocab": built.vocab, "text_len": built.text_len, "meta": built.meta})


def load_builtin(
    name: str,
    size: str = "small",
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
) -> DatasetSplits:
    """Load a built-in dataset, building it first if its cache is missing or fails verification.

    Args:
        name: registry name (``mmunlearn list`` shows them).
        size: ``"small"`` (tests) or ``"full"`` (benchmarks).
        seed: generation seed; the same seed rebuilds bit-identical data.
        data_dir: cache root (default: ``$MMUNLEARN_DATA`` or the user cache folder).
        progress: show a progress bar while building.

    Returns:
        The train, val and test splits.
    """
    path = build_dataset(name, size, seed, data_dir, progress=progress)
    builder = DATASETS.create(name)
    files = listed_files(path)
    meta = json.loads(_cache_file(path, "meta.json", files).read_text())
    splits = {s: _read_split(path, s, builder, meta, files, f"{name}/{size}/{s}") for s in SPLITS}
    return DatasetSplits(
        name=name,
        size=size,
        seed=seed,
        vocab=meta["vocab"],
        text_len=meta["text_len"],
        meta=meta["meta"],
        path=path,
        **splits,
    )


def _cache_file(path: Path, name: str, files: dict[str, str]) -> Path:
    """Where listed file ``name`` of the cache at ``path`` is (see `mmunlearn.fileio.resolve_file`)."""
    return resolve_file(path, name, files.get(name, ""))


def _read_split(
    path: Path, split: str, builder: DatasetBuilder, meta: dict, files: dict[str, str], name: str
) -> MultimodalDataset:
    tensors = load_file(str(_cache_file(path, f"{split}.safetensors", files)))
    info = json.loads(_cache_file(path, f"{split}.json", files).read_text())
    labels = tensors.pop("label", None)
    data = SplitData(ids=info["ids"], tensors=tensors, labels=labels, captions=info["captions"], groups=info["groups"])
    return from_split(data, num_classes=builder.num_classes, vocab=meta["vocab"], name=name)
