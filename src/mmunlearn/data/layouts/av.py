"""Audio-visual layouts: ``av-frames`` (frame folders + wavs + a label CSV) and ``av-csv`` (one CSV of paths).

Each clip is one sample with a label, an image (the middle frame of its frame folder, or its image), a
``video`` of `LayoutOptions.frames` evenly sampled frames (where the clip is a frame folder) and the
log-mel of the centre of its sound. A ``group`` column (speaker, actor) becomes ``groups["identity"]``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from .readers import (
    IMAGE_EXTENSIONS,
    cell,
    natural_key,
    optional_column,
    pick_column,
    read_table,
    relative,
    safe_join,
    split_name,
)
from .spec import LAYOUTS, Item, Layout, LayoutOptions, Plan

CLIP_COLUMNS = ("clip_id", "clip", "video_id", "id")
LABEL_COLUMNS = ("label", "class", "category", "emotion")
GROUP_COLUMNS = ("group", "identity", "speaker", "actor", "speaker_id", "actor_id")
MEDIA_COLUMNS = ("image_or_frames", "image", "frames", "video")
AUDIO_COLUMNS = ("audio", "wav", "sound")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
LABEL_FILES = ("labels.csv", "metadata.csv", "annotations.csv")
SPLIT_FILES = {"train.csv": "train", "val.csv": "val", "valid.csv": "val", "validation.csv": "val", "test.csv": "test"}


def frame_files(root: Path, folder: str) -> list[str]:
    """The image files of a frame folder (relative to ``root``), in natural order ([] if it is missing)."""
    d = root / folder
    if not d.is_dir():
        return []
    names = [p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return [f"{folder}/{n}" for n in sorted(names, key=natural_key)]


def middle_frame(frames: Sequence[str], folder: str) -> str:
    """The middle frame of a clip (see `decode.middle_index`), or the folder itself when it has no frame."""
    from .decode import middle_index

    return frames[middle_index(len(frames))] if frames else folder


# -- av-frames ------------------------------------------------------------------------------------------
def _label_tables(root: Path) -> list[tuple[Path, str | None]]:
    """The label CSV(s) of an av-frames folder and the split each one stands for (None: see the rows)."""
    for name in LABEL_FILES:
        if (root / name).is_file():
            return [(root / name, None)]
    per_split = [(root / n, s) for n, s in SPLIT_FILES.items() if (root / n).is_file()]
    if per_split:
        return [(p, s) for p, s in per_split]
    found = sorted(root.glob("*.csv"))
    if len(found) == 1:
        return [(found[0], None)]
    names = ", ".join(p.name for p in found) or "none"
    raise DataError(
        f"{root}: expected one label CSV (clip_id,label[,group][,split]) named {' or '.join(LABEL_FILES)}, "
        f"or train.csv/val.csv/test.csv; found {names}"
    )


def _has_header(table: Path) -> bool:
    """Whether the first row of a CSV names its columns (its first cell is a clip-id column name)."""
    with open(table, newline="", encoding="utf-8-sig") as f:
        first = next(csv.reader(f), [])
    return bool(first) and first[0].strip().lower() in CLIP_COLUMNS


def _clip_rows(table: Path) -> list[dict[str, str]]:
    """Rows as {clip_id, label, group?, split?}; a CSV without a header is read as clip_id,label[,group][,split]."""
    if _has_header(table):
        rows = read_table(table, "a CSV with columns clip_id,label[,group][,split]")
        cols = {"clip_id": pick_column(table, rows, CLIP_COLUMNS), "label": pick_column(table, rows, LABEL_COLUMNS)}
        for key, choices in (("group", GROUP_COLUMNS), ("split", ("split",))):
            if (col := optional_column(rows, choices)) is not None:
                cols[key] = col
        return [{k: cell(table, n, r, c) for k, c in cols.items()} for n, r in enumerate(rows, start=1)]
    with open(table, newline="", encoding="utf-8-sig") as f:
        raw = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    out = []
    for n, r in enumerate(raw, start=1):
        if not 2 <= len(r) <= 4:
            raise DataError(f"{table}: line {n} has {len(r)} cells; expected clip_id,label[,group][,split]")
        out.append(dict(zip(("clip_id", "label", "group", "split"), (c.strip() for c in r), strict=False)))
    if not out:
        raise DataError(f"{table}: has no rows; expected clip_id,label[,group][,split]")
    return out


def _sound_file(root: Path, clip: str) -> str:
    """``audio/<clip>.wav`` (or .flac, .ogg when that is what exists)."""
    for ext in AUDIO_EXTENSIONS:
        if (root / "audio" / f"{clip}{ext}").is_file():
            return f"audio/{clip}{ext}"
    return f"audio/{clip}.wav"


@LAYOUTS.register("av-frames")
class AVFrames(Layout):
    """What AVE / Kinetics-Sounds / CREMA-D preprocessing scripts produce.

    ``frames/<clip_id>/*.jpg`` (any image type, natural order), ``audio/<clip_id>.wav`` and a label CSV
    ``clip_id,label[,group][,split]`` (``labels.csv``, ``metadata.csv``, ``annotations.csv``, the only
    ``*.csv``, or one CSV per split: ``train.csv``, ``val.csv``, ``test.csv``). With a header row the
    columns go by name; without one, by position.
    """

    name = "av-frames"
    kind = "audio-visual"
    description = "frames/<clip>/*.jpg + audio/<clip>.wav + a CSV of clip_id,label[,group][,split]"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        if not path.is_dir():
            raise DataError(f"{path}: not found (expected a folder with frames/, audio/ and a label CSV)")
        items: list[Item] = []
        frames: dict[str, list[str]] = {}
        tables = _label_tables(path)
        for table, table_split in tables:
            for n, row in enumerate(_clip_rows(table), start=1):
                clip = safe_join(path, row["clip_id"], table, f"row {n}")
                split = split_name(table, f"row {n}", row["split"]) if row.get("split") else table_split
                folder = f"frames/{clip}"
                frames[folder] = frame_files(path, folder)
                items.append(Item(id=clip, split=split, unit=clip, image=middle_frame(frames[folder], folder),
                                  label=row["label"], group=row.get("group") or None, audio=_sound_file(path, clip),
                                  video=folder))  # fmt: skip
        _check_unique(items, tables[0][0])
        return Plan(path, items, [relative(t, path) for t, _ in tables], frames=frames)


def _check_unique(items: Sequence[Item], table: Path) -> None:
    """Refuse two rows with one clip id (the message names the first duplicate)."""
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DataError(f"{table}: clip id {it.id!r} appears twice; ids must be unique")
        seen.add(it.id)


# -- av-csv ---------------------------------------------------------------------------------------------
@LAYOUTS.register("av-csv")
class AVTable(Layout):
    """A CSV (or JSON lines) of ``image_or_frames,audio,label[,group][,split][,id]``, paths relative to the file.

    ``image_or_frames`` is an image file or a folder of frames (then its middle frame is the image). The
    ``video`` modality is there when every clip is a frame folder. Sample ids: the ``id`` column, else the
    ``image_or_frames`` path.
    """

    name = "av-csv"
    kind = "audio-visual"
    description = "a CSV of image_or_frames,audio,label[,group][,split] (paths relative to the file)"

    def parse(self, path: Path, options: LayoutOptions) -> Plan:
        """See `Layout.parse`."""
        if path.is_dir():
            raise DataError(f"{path}: is a folder; expected a CSV with image_or_frames,audio,label columns")
        root = path.parent
        rows = read_table(path, "a CSV with columns image_or_frames,audio,label[,group][,split]")
        media, sound, label = (pick_column(path, rows, c) for c in (MEDIA_COLUMNS, AUDIO_COLUMNS, LABEL_COLUMNS))
        group, split_col, id_col = (optional_column(rows, c) for c in (GROUP_COLUMNS, ("split",), ("id", "clip_id")))
        rels = [safe_join(root, cell(path, n, r, media), path, f"row {n}") for n, r in enumerate(rows, start=1)]
        folders = {r for r in rels if (root / r).is_dir()}
        video = bool(folders) and all(r in folders for r in rels if (root / r).exists())
        frames = {r: frame_files(root, r) for r in rels if r in folders or video}
        items = []
        for n, (row, rel) in enumerate(zip(rows, rels, strict=True), start=1):
            where = f"row {n}"
            items.append(Item(
                id=cell(path, n, row, id_col) if id_col else rel,
                split=split_name(path, where, cell(path, n, row, split_col)) if split_col else None,
                unit=cell(path, n, row, id_col) if id_col else rel,
                image=middle_frame(frames[rel], rel) if rel in frames else rel,
                label=cell(path, n, row, label),
                group=(cell(path, n, row, group) or None) if group else None,
                audio=safe_join(root, cell(path, n, row, sound), path, where),
                video=rel if video else None,
            ))  # fmt: skip
        _check_unique(items, path)
        return Plan(root, items, [path.name], frames=frames)
