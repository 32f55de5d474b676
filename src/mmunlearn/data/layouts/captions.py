"""Image-caption layouts: ``karpathy``, ``coco``, ``imagefolder`` and ``csv``.

Every caption is one sample, with id ``<image path>#<k>`` (the image's path relative to the dataset
root, ``k`` = the caption's position among that image's captions) and the group ``image`` = the
image's path, shared by all the captions of one image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import DataError
from .readers import (
    cell,
    field,
    optional_column,
    pick_column,
    read_json,
    read_table,
    relative,
    require_file,
    safe_join,
    split_name,
)
from .spec import LAYOUTS, Item, Layout, LayoutOptions, Plan
from .splitting import draw

TEXT_COLUMNS = ("text", "caption")
IMAGE_COLUMNS = ("image", "file_name", "filename", "path")
CAPTION_COLUMNS = ("caption", "text")
SPLIT_FOLDERS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "dev": "val", "test": "test"}
METADATA = ("metadata.jsonl", "metadata.csv")
KARPATHY_IMAGE_FOLDERS = ("", "images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images",
                          "flickr30k_images", "Flickr30k_images")  # fmt: skip


def caption_items(entries: Iterable[tuple[str, str, str | None]]) -> list[Item]:
    """Items of (image path, caption, split) triples; ``k`` numbers the captions of each image."""
    seen: dict[str, int] = {}
    items = []
    for image, caption, split in entries:
        k = seen.get(image, 0)
        seen[image] = k + 1
        items.append(Item(id=f"{image}#{k}", split=split, unit=image, image=image, caption=caption))
    return items


# -- karpathy -------------------------------------------------------------------------------------------
def karpathy_file(path: Path) -> Path:
    """The split file: ``path`` itself or the one ``dataset_*.json`` in the folder ``path``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: not found (expected a Karpathy split file dataset_<name>.json or its folder)")
    found = sorted(path.glob("dataset_*.json"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{path}: expected one Karpathy split file dataset_<name>.json, found {names}")
    return found[0]


def karpathy_entries(file: Path, data: Any) -> list[tuple[str, str, list[str]]]:
    """(image path under its folder, split, captions) of each entry of the split file."""
    images = field(file, "the top level", data, "images", list, "list")
    out = []
    for i, entry in enumerate(images):
        where = f"images[{i}]"
        name = field(file, where, entry, "filename", str, "text")
        folder = entry.get("filepath", "") if isinstance(entry, dict) else ""
        if not isinstance(folder, str):
            raise DataError(f"{file}: {where} has a 'filepath' that is not text")
        split = split_name(file, where, field(file, where, entry, "split", str, "text"))
        sentences = field(file, where, entry, "sentences", list, "list")
        caps = []
        for j, s in enumerate(sentences):
            caps.append(field(file, f"{where}.sentences[{j}]", s, "raw", str, "text"))
        rel = safe_join(file.parent, f"{folder}/{name}" if folder else name, file, where)
        out.append((rel, split, caps))
    return out


def karpathy_image_folder(root: Path, rels: Sequence[str], file: Path) -> str:
    """The folder (relative to ``root``) the split file's image paths are relative to."""
    probe = rels[:50]
    for folder in KARPATHY_IMAGE_FOLDERS:
        if any((root / folder / r).is_file() for r in probe):
            return folder
    looked = ", ".join(str(root / f) for f in KARPATHY_IMAGE_FOLDERS)
    raise DataError(f"{file}: cannot find its images (e.g. {probe[0]!r}); looked in {looked}")


@LAYOUTS.register("karpathy")
class Karpathy(Layout):
    """Karpathy's split file (``dataset_flickr8k.json``, ``dataset_flickr30k.json``, ``dataset_coco.json``).

    ``restval`` counts as train. Images are looked up under the file's folder, then under ``images/``,
    ``Images/``, ``Flicker8k_Dataset/``, ``Flickr8k_Dataset/``, ``flickr30k-images/``...
    (``filepath/filename`` for COCO).
    """

    name = "karpathy"
    kind = "image-caption"
    description = "Karpathy split JSON (Flickr8k/Flickr30k/COCO) with its image folder"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        file = karpathy_file(path)
        root = file.parent
        entries = karpathy_entries(file, read_json(file, "a Karpathy split file {'images': [...]}"))
        if not entries:
            raise DataError(f"{file}: 'images' is empty")
        folder = karpathy_image_folder(root, [e[0] for e in entries], file)
        prefix = f"{folder}/" if folder else ""
        triples = [(prefix + rel, cap, split) for rel, split, caps in entries for cap in caps]
        return Plan(root, caption_items(triples), [file.name], notes={"annotations": file.name})


# -- coco -----------------------------------------------------------------------------------------------
def _coco_captions(file: Path, folder: str) -> list[tuple[str, str]]:
    """(image path, caption) pairs of a COCO captions file, by image id then annotation id."""
    data = read_json(file, "a COCO captions file {'images': [...], 'annotations': [...]}")
    images = field(file, "the top level", data, "images", list, "list")
    anns = field(file, "the top level", data, "annotations", list, "list")
    names: dict[int, str] = {}
    for i, img in enumerate(images):
        image_id = field(file, f"images[{i}]", img, "id", int, "integer")
        names[image_id] = field(file, f"images[{i}]", img, "file_name", str, "text")
    caps: dict[int, list[tuple[int, str]]] = {}
    for i, ann in enumerate(anns):
        image_id = field(file, f"annotations[{i}]", ann, "image_id", int, "integer")
        if image_id not in names:
            raise DataError(f"{file}: annotations[{i}] refers to image_id {image_id}, which 'images' does not list")
        text = field(file, f"annotations[{i}]", ann, "caption", str, "text")
        ann_id = ann.get("id", i)
        caps.setdefault(image_id, []).append((ann_id if isinstance(ann_id, int) else i, text.strip()))
    return [(f"{folder}/{names[k]}", text) for k in sorted(caps) for _, text in sorted(caps[k])]


@LAYOUTS.register("coco")
class Coco(Layout):
    """MS-COCO captions: ``annotations/captions_{train,val}2017.json`` with ``train2017/`` and ``val2017/``.

    COCO publishes no test captions, so val2017 is split in two by image with a seeded draw (half val,
    half test); train2017 is train. The 2014 release (``captions_train2014.json``...) is read the same
    way when there is no 2017 file.
    """

    name = "coco"
    kind = "image-caption"
    description = "MS-COCO captions JSON with train2017/ and val2017/ (val2017 split into val and test, seeded)"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        year = "2017" if (path / "annotations" / "captions_train2017.json").is_file() else "2014"
        if year == "2014" and not (path / "annotations" / "captions_train2014.json").is_file():
            require_file(path / "annotations" / "captions_train2017.json", "the COCO train captions file")
        files = [path / "annotations" / f"captions_{part}{year}.json" for part in ("train", "val")]
        train = _coco_captions(require_file(files[0], "the COCO train captions file"), f"train{year}")
        val = _coco_captions(require_file(files[1], "the COCO val captions file"), f"val{year}")
        halves = draw([img for img, _ in val], ["val", "test"], [0.5, 0.5], options.seed, 4)
        triples = [(img, cap, "train") for img, cap in train] + [(img, cap, halves[img]) for img, cap in val]
        notes: dict[str, object] = {
            "year": year,
            "test": f"val{year} images split by seed {options.seed}: half val, half test",
        }
        return Plan(path, caption_items(triples), [relative(f, path) for f in files], notes=notes)


# -- imagefolder ----------------------------------------------------------------------------------------
def _metadata(folder: Path) -> Path | None:
    """The metadata file of ``folder`` (``metadata.jsonl`` before ``metadata.csv``), if any."""
    return next((folder / m for m in METADATA if (folder / m).is_file()), None)


def _table_captions(
    table: Path, root: Path, prefix: str, image_cols: Sequence[str], text_cols: Sequence[str]
) -> list[tuple[str, str, str | None]]:
    """(image path, caption, split or None) of each caption of a metadata table (a cell may list several)."""
    rows = read_table(table, f"a table with columns {image_cols[0]} and {' or '.join(text_cols)}")
    image_col = pick_column(table, rows, image_cols)
    text_col = pick_column(table, rows, text_cols)
    split_col = optional_column(rows, ["split"])
    out = []
    for n, row in enumerate(rows, start=1):
        rel = prefix + safe_join(root, cell(table, n, row, image_col), table, f"row {n}")
        split = split_name(table, f"row {n}", cell(table, n, row, split_col)) if split_col else None
        texts = row.get(text_col, "")
        for text in texts if isinstance(texts, list) else [texts]:
            out.append((rel, text, split))
    return out


@LAYOUTS.register("imagefolder")
class ImageFolder(Layout):
    """Hugging Face's imagefolder: ``metadata.jsonl`` or ``metadata.csv`` with ``file_name`` and ``text``/``caption``.

    The metadata is either in split folders (``train/``, ``validation/`` (or ``valid/``, ``val/``,
    ``dev/``), ``test/``; file names relative to that folder) or at the root (file names relative to
    the root; when every one starts with a split folder, that folder is its split). Without splits, a
    seeded 80/10/10 split by image; split folders that are absent are drawn from train.
    """

    name = "imagefolder"
    kind = "image-caption"
    description = "Hugging Face imagefolder: metadata.jsonl/csv with file_name and text (optional split folders)"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        if not path.is_dir():
            raise DataError(f"{path}: not found (expected an imagefolder dataset folder)")
        split_tables = {d: t for d in SPLIT_FOLDERS if (path / d).is_dir() and (t := _metadata(path / d))}
        if split_tables:
            triples: list[tuple[str, str, str | None]] = []
            for folder, table in split_tables.items():
                for rel, cap, _ in _table_captions(table, path / folder, f"{folder}/", ("file_name",), TEXT_COLUMNS):
                    triples.append((rel, cap, SPLIT_FOLDERS[folder]))
            sources = [relative(t, path) for t in split_tables.values()]
        else:
            root_table = _metadata(path)
            if root_table is None:
                raise DataError(
                    f"{path}: no metadata.jsonl or metadata.csv (at the root or in train/, validation/, test/)"
                )
            triples = [
                (rel, cap, _split_of_path(rel))
                for rel, cap, _ in _table_captions(root_table, path, "", ("file_name",), TEXT_COLUMNS)
            ]
            if any(s is None for _, _, s in triples):
                triples = [(rel, cap, None) for rel, cap, _ in triples]
            sources = [root_table.name]
        return Plan(path, caption_items(triples), sources)


def _split_of_path(rel: str) -> str | None:
    """The split of a root-relative file name whose first folder is a split folder, else None."""
    head = rel.split("/", 1)[0]
    return SPLIT_FOLDERS.get(head) if "/" in rel else None


# -- csv ------------------------------------------------------------------------------------------------
@LAYOUTS.register("csv")
class CaptionTable(Layout):
    """A CSV (header row) or JSON-lines file with ``image`` and ``caption`` columns, paths relative to the file.

    An optional ``split`` column gives the splits; without it, a seeded 80/10/10 split by image.
    ``file_name``/``filename``/``path`` are accepted for ``image`` and ``text`` for ``caption``.
    """

    name = "csv"
    kind = "image-caption"
    description = "a CSV or JSONL of image,caption[,split] (paths relative to the file)"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        if path.is_dir():
            raise DataError(f"{path}: is a folder; expected a .csv or .jsonl file with image,caption columns")
        triples = _table_captions(path, path.parent, "", IMAGE_COLUMNS, CAPTION_COLUMNS)
        return Plan(path.parent, caption_items(triples), [path.name])
