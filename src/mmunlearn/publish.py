"""Publishing protected data: `export_protected` writes it in its own layout, `verify_export` checks it.

A data owner who protected the training split of an image-caption dataset (``mmunlearn protect``)
publishes files, not tensors. `export_protected` writes:

* every protected **training image** as a lossless RGB PNG at the loader's stored resolution (the
  ``image_size`` the protection was computed at, 32 x 32 by default): ``clip(clean + noise, 0, 255)``
  computed in integers on the uint8 pixels the loader decodes, so no rounding can leave the budget;
  its name is the original's with the suffix ``.png``;
* the **training captions** with their trigger words in front (``"<trigger> <caption>"``), in the same
  layout and schema as the input (Karpathy JSON, COCO captions JSON, imagefolder ``metadata.jsonl``,
  CSV/JSON-lines), other fields kept;
* **val/test** entries unchanged, their images copied byte for byte;
* ``manifest.json``: the method, budget, resolution, the mapping original -> published of every image and
  sample (with its trigger), and the SHA-256 of every written file.

Where the input leaves a split to a seeded draw that a renamed file would change (``csv`` without a
``split`` column, ``imagefolder`` without split folders for every split), the export writes the splits
out explicitly: a ``split`` column, or ``train/``, ``validation/``, ``test/`` folders. A built-in dataset
(no files) is exported as ``imagefolder`` with split folders.

`verify_export` reads the published files back and checks them against the original dataset.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import DatasetRef, load_dataset
from .data.core import MultimodalDataset
from .data.layouts import load_layout
from .data.layouts.captions import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    METADATA,
    SPLIT_FOLDERS,
    TEXT_COLUMNS,
    karpathy_entries,
    karpathy_file,
    karpathy_image_folder,
)
from .data.layouts.readers import optional_column, pick_column, read_json, read_table, safe_join
from .data.store import DatasetSplits
from .errors import CheckpointError, DataError
from .fileio import MANIFEST, replace_folder, sha256_bytes, sha256_file, staging_folder
from .protectors.protected import ProtectedDataset, noise_units

log = logging.getLogger(__name__)
FORMAT = "mmunlearn-published/1"
OUT_FOLDER = {"train": "train", "val": "validation", "test": "test"}
"""The split folders an export writes where it writes split folders (imagefolder)."""


# -- what the export needs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Export:
    """The state of one export: the data, the protection as pixels and words, and what was written."""

    stage: Path
    splits: DatasetSplits
    split_of: dict[str, str]
    caption_of: dict[str, str]
    trigger_of: dict[str, str]
    pixels: dict[str, np.ndarray]
    files: dict[str, str] = field(default_factory=dict)
    images: dict[str, list[Any]] = field(default_factory=dict)
    samples: list[list[Any]] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)

    def split(self, sample_id: str, where: str) -> str:
        """The split of an original sample.

        Raises:
            DataError: the annotations list a sample the loaded dataset does not have.
        """
        if sample_id not in self.split_of:
            raise DataError(f"{where}: sample {sample_id!r} is not in the loaded dataset (skipped as bad?)")
        return self.split_of[sample_id]

    def caption(self, sample_id: str, text: str) -> str:
        """The published caption: the trigger words in front of the training captions."""
        words = self.trigger_of.get(sample_id, "")
        return f"{words} {text.strip()}" if words else text

    def sample(self, original: str, published: str) -> None:
        """Record one sample's original and published ids."""
        self.samples.append([original, published, self.split_of[original], self.trigger_of.get(original) or None])

    def write(self, rel: str, data: bytes) -> None:
        """Write one file of the export (relative POSIX path) and record its SHA-256."""
        if rel in self.files:
            raise DataError(f"the export would write {rel} twice (two files map to the same published name)")
        path = self.stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = sha256_bytes(data)

    def image(self, original: str, published: str, source: Path | None) -> None:
        """Publish one image: the protected PNG of a training image, else a byte copy of ``source``."""
        if original in self.images:
            return
        if original in self.pixels:
            self.write(published, png_bytes(self.pixels[original]))
            self.images[original] = [published, True]
        elif source is not None:
            self.write(published, source.read_bytes())
            self.images[original] = [published, False]

    def annotation(self, rel: str, data: bytes) -> None:
        """Write an annotation file."""
        self.write(rel, data)
        self.annotations.append(rel)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A lossless RGB PNG of uint8 (3, H, W) pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float (N, C, H, W) images on the 1/255 grid -> uint8 (exact for loader-decoded images)."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def protected_pixels(protected: ProtectedDataset, train: MultimodalDataset) -> np.ndarray:
    """uint8 (N, C, H, W) protected training pixels in ``protected.ids`` order: ``clip(clean + noise, 0, 255)``.

    Computed in integers on the clean uint8 pixels, so every pixel is within ``noise_units(epsilon)`` of
    the clean one.
    """
    pos = train.positions(protected.ids)
    clean = torch.from_numpy(to_uint8(train.inputs["image"][pos])).to(torch.int16)
    if protected.noise is not None:
        clean = (clean + protected.noise.to(torch.int16)).clamp(0, 255)
    return clean.to(torch.uint8).numpy()


def png_name(rel: str) -> str:
    """``rel`` with the suffix ``.png`` (the name of a published training image)."""
    return str(PurePosixPath(rel).with_suffix(".png"))


# -- the export ------------------------------------------------------------------------------------------
def export_protected(
    protected: ProtectedDataset,
    out_dir: str | os.PathLike[str],
    splits: DatasetSplits | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the protected dataset as files a data owner can publish (see the module docstring).

    Args:
        protected: the protection of the training split (its ``source`` names the dataset).
        out_dir: the folder to write (must not exist or be empty unless ``overwrite``); it appears whole.
        splits: the dataset (default: loaded from ``protected.source``).
        data_dir: dataset cache root.
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        DataError: the data is not the protection's, the captions of one image carry different noise (a
            protection made before one-noise-per-image), or two files would get the same published name.
        CheckpointError: ``out_dir`` is not an empty folder (without ``overwrite``), or the protection
            records no dataset.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise CheckpointError(f"{out} is not an empty folder; pass overwrite=True (--overwrite) to replace it")
    ref = _source_ref(protected)
    splits = splits if splits is not None else ref.load(data_dir)
    protected.check_source(splits.train)
    stage = staging_folder(out)
    try:
        ex = _prepare(protected, splits, stage)
        layout = ref.layout or "imagefolder"
        _EXPORTERS[ref.layout or "builtin"](ex, Path(ref.name))
        _check_complete(ex)
        manifest = _manifest(ex, protected, ref, layout)
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        replace_folder(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("exported %d files of the %s protection to %s", len(ex.files), protected.method, out)
    return out


def _source_ref(protected: ProtectedDataset) -> DatasetRef:
    """The dataset the protection records.

    Raises:
        CheckpointError: it records none.
    """
    if "dataset" not in protected.source:
        raise CheckpointError(
            f"the protection of {protected.source.get('name')!r} records no dataset (dataset, size, data_seed and "
            "layout, as `mmunlearn protect` writes them): the export needs the files it was made from"
        )
    return DatasetRef.from_provenance(protected.source)


def _prepare(protected: ProtectedDataset, splits: DatasetSplits, stage: Path) -> _Export:
    """Splits, captions, trigger words and protected pixels (one per image) of every original sample."""
    split_of = {i: s for s in ("train", "val", "test") for i in splits.split(s).ids}
    caption_of: dict[str, str] = {}
    for s in ("train", "val", "test"):
        d = splits.split(s)
        caption_of.update(zip(d.ids, d.captions or [""] * len(d), strict=True))
    vocab = splits.vocab or []
    triggers = protected.triggers.tolist() if protected.triggers is not None else [[]] * len(protected)
    trigger_of = {i: " ".join(vocab[t] for t in row) for i, row in zip(protected.ids, triggers, strict=True)}
    pixels = protected_pixels(protected, splits.train)
    train = splits.train
    image_names = train.groups.get("image") or list(train.ids)
    name_of = dict(zip(train.ids, image_names, strict=True))
    per_image: dict[str, np.ndarray] = {}
    for sid, px in zip(protected.ids, pixels, strict=True):
        name = name_of[sid]
        if name in per_image and not np.array_equal(per_image[name], px):
            raise DataError(
                f"the {protected.method} protection gives the captions of image {name} different noise; "
                "protect the dataset again (this version gives one noise per image)"
            )
        per_image.setdefault(name, px)
    return _Export(stage, splits, split_of, caption_of, trigger_of, per_image)


def _check_complete(ex: _Export) -> None:
    """Every loaded sample was published once.

    Raises:
        DataError: some were not (the annotations and the loaded data disagree).
    """
    done = {s[0] for s in ex.samples}
    missing = [i for i in ex.split_of if i not in done]
    if missing or len(done) != len(ex.samples):
        raise DataError(f"the export misses {len(missing)} sample(s), e.g. {missing[:3]}, or repeats one")


def _manifest(ex: _Export, protected: ProtectedDataset, ref: DatasetRef, layout: str) -> dict[str, Any]:
    """The export's manifest (see the module docstring)."""
    options = ex.splits.meta.get("options")
    side = int(ex.splits.train.inputs["image"].shape[-1])
    image_size = int(options.get("image_size", side)) if isinstance(options, dict) else side
    eps = protected.epsilon
    return {
        "format": FORMAT,
        "layout": layout,
        "source_layout": ref.layout,
        "source": protected.source,
        "method": protected.method,
        "config": protected.config,
        "epsilon": eps,
        "noise_units": noise_units(eps) if eps else 0,
        "image_size": image_size,
        "data_seed": ref.seed,
        "size": ref.size,
        "annotations": ex.annotations,
        "load_path": ex.annotations[0] if layout == "csv" else ".",
        "images": [[orig, pub, prot] for orig, (pub, prot) in ex.images.items()],
        "samples": ex.samples,
        "files": ex.files,
    }


# -- one exporter per layout -----------------------------------------------------------------------------
def _export_karpathy(ex: _Export, path: Path) -> None:
    """Karpathy split JSON: training entries get PNG file names and triggered ``raw`` (and ``tokens``)."""
    file = karpathy_file(path)
    root = file.parent
    data = read_json(file, "a Karpathy split file {'images': [...]}")
    entries = karpathy_entries(file, data)
    folder = karpathy_image_folder(root, [e[0] for e in entries], file)
    prefix = f"{folder}/" if folder else ""
    out = copy.deepcopy(data)
    seen: dict[str, int] = {}
    for n, (entry, (rel, _, caps)) in enumerate(zip(out["images"], entries, strict=True)):
        image = prefix + rel
        ids = [f"{image}#{seen.get(image, 0) + j}" for j in range(len(caps))]
        seen[image] = seen.get(image, 0) + len(caps)
        train = bool(ids) and ex.split(ids[0], f"{file}: images[{n}]") == "train"
        published = png_name(image) if train else image
        if train:
            entry["filename"] = png_name(entry["filename"])
            for sid, sentence in zip(ids, entry["sentences"], strict=True):
                words = ex.trigger_of.get(sid, "")
                sentence["raw"] = ex.caption(sid, sentence["raw"])
                if words and isinstance(sentence.get("tokens"), list):
                    sentence["tokens"] = [*words.split(), *sentence["tokens"]]
        for j, sid in enumerate(ids):
            ex.sample(sid, f"{published}#{ids[j].rsplit('#', 1)[1]}")
        if ids:
            ex.image(image, published, root / image)
    ex.annotation(file.name, json.dumps(out, ensure_ascii=False).encode())


def _coco_ids(data: dict[str, Any], folder: str) -> list[str]:
    """The sample id of each annotation of a COCO captions file, numbered as the ``coco`` reader numbers them."""
    names = {img["id"]: img["file_name"] for img in data["images"]}
    keys = []
    for i, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id", i)
        keys.append((ann["image_id"], ann_id if isinstance(ann_id, int) else i, ann["caption"].strip(), i))
    ids = [""] * len(keys)
    seen: dict[str, int] = {}
    for image_id, _, _, i in sorted(keys):
        image = f"{folder}/{names[image_id]}"
        ids[i] = f"{image}#{seen.get(image, 0)}"
        seen[image] = seen.get(image, 0) + 1
    return ids


def _export_coco(ex: _Export, path: Path) -> None:
    """COCO: the train captions file gets PNG file names and triggered captions; the val file is copied."""
    year = "2017" if (path / "annotations" / "captions_train2017.json").is_file() else "2014"
    for part in ("train", "val"):
        rel = f"annotations/captions_{part}{year}.json"
        data = read_json(path / rel, "a COCO captions file")
        ids = _coco_ids(data, f"{part}{year}")
        out = copy.deepcopy(data)
        published = {}
        for img in out["images"]:
            image = f"{part}{year}/{img['file_name']}"
            train = ex.split_of.get(f"{image}#0") == "train"
            published[image] = png_name(image) if train else image
            if train:
                img["file_name"] = png_name(img["file_name"])
            if f"{image}#0" in ex.split_of:
                ex.image(image, published[image], path / image)
        for sid, ann in zip(ids, out["annotations"], strict=True):
            ex.split(sid, str(path / rel))
            ann["caption"] = ex.caption(sid, ann["caption"])
            image, k = sid.rsplit("#", 1)
            ex.sample(sid, f"{published[image]}#{k}")
        ex.annotation(rel, (path / rel).read_bytes() if out == data else json.dumps(out).encode())


def _rows(table: Path, root: Path, prefix: str, image_cols: tuple[str, ...], text_cols: tuple[str, ...]) -> Iterator[
    tuple[dict[str, Any], str, str, str]
]:  # fmt: skip
    """(row, image column, text column, image path relative to the dataset root) of a caption table."""
    rows = read_table(table, f"a table with columns {image_cols[0]} and {' or '.join(text_cols)}")
    image_col, text_col = pick_column(table, rows, image_cols), pick_column(table, rows, text_cols)
    for n, row in enumerate(rows, start=1):
        yield row, image_col, text_col, prefix + safe_join(root, str(row[image_col]), table, f"row {n}")


def _caption_cells(ex: _Export, row: dict[str, Any], text_col: str, image: str, seen: dict[str, int]) -> list[str]:
    """Number the row's captions like the readers do, record their samples' triggered text; returns their ids."""
    texts = row.get(text_col, "")
    cells = texts if isinstance(texts, list) else [texts]
    ids = [f"{image}#{seen.get(image, 0) + j}" for j in range(len(cells))]
    seen[image] = seen.get(image, 0) + len(cells)
    new = [ex.caption(sid, str(c)) for sid, c in zip(ids, cells, strict=True)]
    row[text_col] = new if isinstance(texts, list) else new[0]
    return ids


def _table_bytes(rows: list[dict[str, Any]], jsonl: bool) -> bytes:
    """Rows as JSON lines, or as CSV with a header row (columns in first-seen order)."""
    if jsonl:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _export_csv(ex: _Export, path: Path) -> None:
    """CSV/JSON-lines caption table: PNG paths and triggered captions for training rows; a ``split`` column."""
    root = path.parent
    seen: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    rows = list(_rows(path, root, "", IMAGE_COLUMNS, CAPTION_COLUMNS))
    split_col = optional_column([r[0] for r in rows], ["split"]) or "split"
    for row, image_col, text_col, image in rows:
        row = dict(row)
        ids = _caption_cells(ex, row, text_col, image, seen)
        split = ex.split(ids[0], str(path))
        published = png_name(image) if split == "train" else image
        row[image_col] = published
        row.setdefault(split_col, split)
        for sid in ids:
            ex.sample(sid, f"{published}#{sid.rsplit('#', 1)[1]}")
        ex.image(image, published, root / image)
        out.append(row)
    ex.annotation(path.name, _table_bytes(out, path.suffix.lower() == ".jsonl"))


def _imagefolder_tables(path: Path) -> list[tuple[Path, str]]:
    """(metadata file, path prefix of its file names) as the ``imagefolder`` reader finds them."""
    split_tables = [
        (t, f"{d}/") for d in SPLIT_FOLDERS if (path / d).is_dir() and (t := _first_metadata(path / d)) is not None
    ]
    if split_tables:
        return split_tables
    table = _first_metadata(path)
    if table is None:
        raise DataError(f"{path}: no metadata.jsonl or metadata.csv (at the root or in train/, validation/, test/)")
    return [(table, "")]


def _first_metadata(folder: Path) -> Path | None:
    return next((folder / m for m in METADATA if (folder / m).is_file()), None)


def _export_imagefolder(ex: _Export, path: Path) -> None:
    """imagefolder: split folders ``train/``, ``validation/``, ``test/``, each with its metadata table.

    A split folder's table keeps its format (``metadata.jsonl`` or ``metadata.csv``); a table none of whose
    rows changes (a val/test split folder) is copied byte for byte. New split folders get ``metadata.jsonl``.
    """
    seen: dict[str, int] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    for table, prefix in _imagefolder_tables(path):
        root = path / prefix if prefix else path
        rows, verbatim = [], bool(prefix)
        for row, image_col, text_col, image in _rows(table, root, prefix, ("file_name",), TEXT_COLUMNS):
            row = dict(row)
            ids = _caption_cells(ex, row, text_col, image, seen)
            split = ex.split(ids[0], str(table))
            head, _, rest = image.partition("/")
            folder = head if rest and SPLIT_FOLDERS.get(head) == split else OUT_FOLDER[split]
            inner = rest if rest and head in SPLIT_FOLDERS else image
            inner = png_name(inner) if split == "train" else inner
            verbatim = verbatim and split != "train" and f"{folder}/" == prefix
            row[image_col] = inner
            row.pop("split", None)
            for sid in ids:
                ex.sample(sid, f"{folder}/{inner}#{sid.rsplit('#', 1)[1]}")
            ex.image(image, f"{folder}/{inner}", path / image)
            rows.append((folder, row))
        if verbatim:
            ex.annotation(f"{prefix}{table.name}", table.read_bytes())
            continue
        for folder, row in rows:
            tables.setdefault(folder, []).append(row)
            kinds.setdefault(folder, table.name)
    for folder, out in tables.items():
        name = kinds[folder]
        if name.endswith(".csv") and any(isinstance(v, list) for r in out for v in r.values()):
            name = "metadata.jsonl"
        ex.annotation(f"{folder}/{name}", _table_bytes(out, jsonl=name.endswith(".jsonl")))


def _export_builtin(ex: _Export, _: Path) -> None:
    """A built-in set (no files): imagefolder split folders of PNGs named by sample id, ``metadata.jsonl``."""
    for split in ("train", "val", "test"):
        d = ex.splits.split(split)
        pixels = to_uint8(d.inputs["image"])
        rows = []
        for i, sid in enumerate(d.ids):
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in sid) + ".png"
            rel = f"{OUT_FOLDER[split]}/{name}"
            if sid in ex.pixels:
                ex.image(sid, rel, None)
            else:
                ex.write(rel, png_bytes(pixels[i]))
                ex.images[sid] = [rel, False]
            rows.append({"file_name": name, "text": ex.caption(sid, ex.caption_of[sid])})
            ex.sample(sid, f"{rel}#0")
        ex.annotation(f"{OUT_FOLDER[split]}/metadata.jsonl", _table_bytes(rows, jsonl=True))


_EXPORTERS: dict[str, Callable[[_Export, Path], None]] = {
    "karpathy": _export_karpathy,
    "coco": _export_coco,
    "csv": _export_csv,
    "imagefolder": _export_imagefolder,
    "builtin": _export_builtin,
}


# -- verification ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One verdict of `verify_export`.

    Attributes:
        name: what was checked (``manifest``, ``files``, ``checksums``, ``load``, ``samples``, ``budget``,
            ``unchanged``, ``triggers``).
        ok: whether it passed.
        detail: what was compared, or what failed (the files named).
    """

    name: str
    ok: bool
    detail: str


def read_export_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an export.

    Raises:
        CheckpointError: missing, unreadable or of another format.
    """
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the export manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a published protection (format {FORMAT!r})")
    return manifest


def _named(paths: list[str], more: str = "") -> str:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return shown + more


def check_files(folder: Path, manifest: dict[str, Any]) -> list[Check]:
    """Nothing missing or extra, and every file's SHA-256 as the manifest lists it."""
    files: dict[str, str] = manifest.get("files", {})
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    missing = sorted(set(files) - present)
    extra = sorted(present - set(files))
    bad = sorted(rel for rel in set(files) & present if sha256_file(folder / rel) != files[rel])
    listing = "; ".join(
        part for part in (missing and f"missing: {_named(missing)}", extra and f"extra: {_named(extra)}") if part
    )
    return [
        Check("files", not listing, listing or f"the {len(files)} files the manifest lists, no other"),
        Check("checksums", not bad, f"SHA-256 differs: {_named(bad)}" if bad else f"{len(files)} SHA-256 match"),
    ]


def _by_id(splits: DatasetSplits) -> dict[str, tuple[MultimodalDataset, int, str]]:
    """Sample id -> (its split's dataset, row, split name)."""
    return {sid: (splits.split(s), i, s) for s in ("train", "val", "test") for i, sid in enumerate(splits.split(s).ids)}


def verify_export(
    original: str | os.PathLike[str],
    published: str | os.PathLike[str],
    *,
    layout: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    epsilon: float | None = None,
) -> list[Check]:
    """Check a published protection against the original dataset; one `Check` per property.

    Compared: both datasets are decoded the way the loader does (RGB, centre crop, bicubic resize to the
    manifest's ``image_size``: the stored, training resolution), and the published training images must
    be stored at that resolution. Every training pixel must be within ``noise_units(epsilon)``/255 of the
    original's (uint8 units), val/test images and captions must equal the original's, every training
    caption must read ``"<trigger> <original caption>"``, the sample ids must map one to one, and every
    file must be listed with its SHA-256.

    Args:
        original: the original dataset (a path with ``layout``, or a built-in name).
        published: the folder `export_protected` wrote.
        layout: the original's layout (default: the one the manifest records).
        data_dir: dataset cache root (both datasets are decoded through the layout cache).
        epsilon: the budget to enforce (default: the manifest's; pass it to not trust the manifest's).
    """
    folder = Path(published)
    try:
        manifest = read_export_manifest(folder)
    except CheckpointError as e:
        return [Check("manifest", False, str(e))]
    units = noise_units(epsilon) if epsilon is not None else int(manifest.get("noise_units", 0))
    recorded = manifest.get("epsilon")
    coherent = epsilon is not None or units == (noise_units(recorded) if recorded else 0)
    manifest = {**manifest, "noise_units": units}
    checks = [
        Check(
            "manifest",
            coherent,
            f"{manifest['method']} export of {manifest['layout']} layout, budget {units}/255"
            + ("" if coherent else f" but epsilon {recorded} gives another budget"),
        )
    ]
    checks += check_files(folder, manifest)
    size, seed = int(manifest["image_size"]), int(manifest["data_seed"])
    layout = layout or manifest.get("source_layout")
    try:
        if layout is None:
            orig = load_dataset(str(original), manifest.get("size", "small"), seed, data_dir)
        else:
            orig = load_layout(original, layout, seed=seed, image_size=size, data_dir=data_dir)
        pub = load_export(folder, manifest, data_dir)
    except (DataError, OSError) as e:
        return [*checks, Check("load", False, str(e))]
    checks.append(Check("load", True, f"both read with the {manifest['layout']} loader at {size}x{size}"))
    return checks + _content_checks(folder, manifest, orig, pub)


def load_export(
    folder: str | os.PathLike[str],
    manifest: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> DatasetSplits:
    """A published protection read back with its layout's loader (the seed and image size of the export).

    Raises:
        CheckpointError: no export manifest there.
        DataError: a missing or unreadable file (named).
    """
    manifest = manifest if manifest is not None else read_export_manifest(folder)
    path = Path(folder) / manifest.get("load_path", ".")
    return load_layout(
        path, manifest["layout"], seed=int(manifest["data_seed"]), image_size=int(manifest["image_size"]),
        data_dir=data_dir,
    )  # fmt: skip


def _content_checks(folder: Path, manifest: dict[str, Any], orig: DatasetSplits, pub: DatasetSplits) -> list[Check]:
    """Samples one to one, the budget, unchanged val/test, and the triggers."""
    a, b = _by_id(orig), _by_id(pub)
    samples = manifest["samples"]
    mapped = {o: p for o, p, _, _ in samples}
    missing = sorted(o for o in a if o not in mapped) + sorted(p for _, p, _, _ in samples if p not in b)
    extra = sorted(set(b) - set(mapped.values())) + sorted(o for o in mapped if o not in a)
    wrong_split = sorted(p for o, p, _, _ in samples if o in a and p in b and a[o][2] != b[p][2])
    problems = "; ".join(x for x in (missing and f"missing: {_named(missing)}", extra and f"extra: {_named(extra)}",
                                     wrong_split and f"in another split: {_named(wrong_split)}") if x)  # fmt: skip
    checks = [Check("samples", not problems, problems or f"{len(samples)} samples map one to one, splits kept")]
    units, size = int(manifest["noise_units"]), int(manifest["image_size"])
    over: list[str] = []
    changed: list[str] = []
    untriggered: list[str] = []
    shape: list[str] = []
    for o, p, split, trigger in samples:
        if o not in a or p not in b:
            continue
        (da, ia, _), (db, ib, _) = a[o], b[p]
        x, y = to_uint8(da.inputs["image"][ia : ia + 1])[0], to_uint8(db.inputs["image"][ib : ib + 1])[0]
        image = p.rsplit("#", 1)[0]
        diff = int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())
        if split == "train" and (diff > units or _stored_size(folder / image) != (size, size)):
            (over if diff > units else shape).append(image)
        if split != "train" and diff:
            changed.append(image)
        ca, cb = (da.captions or [""])[ia].strip(), (db.captions or [""])[ib].strip()
        want = f"{trigger} {ca}" if trigger else ca
        if cb != want:
            (untriggered if split == "train" else changed).append(f"{p} ({_annotation_of(manifest, image)})")
    over, changed, untriggered, shape = (sorted(set(v)) for v in (over, changed, untriggered, shape))
    checks.append(Check("budget", not over and not shape,
                        (f"over {units}/255: {_named(over)}" if over else "") +
                        (f"not stored at {size}x{size}: {_named(shape)}" if shape else "") or
                        f"every training pixel within {units}/255 of the original at {size}x{size}"))  # fmt: skip
    checks.append(Check("unchanged", not changed, f"val/test differ: {_named(changed)}" if changed else
                        "val/test images (decoded) and captions equal the original's"))  # fmt: skip
    checks.append(Check("triggers", not untriggered, f"caption without its trigger: {_named(untriggered)}"
                        if untriggered else "every training caption reads '<trigger> <original caption>'"))  # fmt: skip
    return checks


def _stored_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a published image file, None when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError):
        return None


def _annotation_of(manifest: dict[str, Any], image: str) -> str:
    """The annotation file that lists ``image`` (the one in its folder, else the only one, else all)."""
    notes: list[str] = manifest.get("annotations", [])
    head = image.split("/", 1)[0]
    near = [n for n in notes if n.startswith(f"{head}/")]
    return ", ".join(near or notes)


__all__ = [
    "FORMAT",
    "Check",
    "export_protected",
    "load_export",
    "read_export_manifest",
    "verify_export",
]
