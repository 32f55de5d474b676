"""Reading annotation files (JSON, JSON lines, CSV) with errors that name the file and what was expected."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import DataError
from .spec import SPLIT_ALIASES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(name))


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file.

    Raises:
        DataError: ``<path>: not found (expected <what>)``.
    """
    if not path.is_file():
        raise DataError(f"{path}: not found (expected {what})")
    return path


def read_json(path: Path, what: str) -> Any:
    """The parsed JSON file ``path``.

    Raises:
        DataError: missing file or invalid JSON (with the line and column).
    """
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); expected {what}") from e


def field(path: Path, where: str, obj: Any, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
    """``obj[key]`` checked to be of ``kind``.

    Raises:
        DataError: e.g. ``dataset_flickr8k.json: images[3] has no 'sentences' list``.
    """
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: {where} has no {key!r} {expected}")
    return value


def read_table(path: Path, what: str) -> list[dict[str, Any]]:
    """Rows of a CSV (header row required) or JSON-lines file, as ``{column: value}``.

    CSV values are stripped text; JSON-lines values are kept when they are lists of text (several
    captions), made text otherwise (``null`` becomes ``""``).

    Raises:
        DataError: missing file, no rows, a row that is not a JSON object, or an undecodable file.
    """
    require_file(path, what)
    try:
        rows = _read_jsonl(path) if path.suffix.lower() == ".jsonl" else _read_csv(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); expected {what}") from e
    if not rows:
        raise DataError(f"{path}: has no rows; expected {what}")
    return rows


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = []
        for n, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise DataError(
                    f"{path}: line {n} has {_count(row)} cells, the header has {len(reader.fieldnames or [])}"
                )
            rows.append({k.strip(): v.strip() for k, v in row.items()})
    return rows


def _count(row: dict[Any, Any]) -> int:
    extra = row.get(None) or []
    return sum(v is not None for k, v in row.items() if k is not None) + len(extra)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n} is not valid JSON ({e})") from e
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {n} is not a JSON object")
            rows.append({str(k): _jsonl_value(v) for k, v in obj.items()})
    return rows


def _jsonl_value(value: Any) -> str | list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    return "" if value is None else str(value).strip()


def cell(path: Path, n: int, row: dict[str, Any], column: str) -> str:
    """The text of ``row[column]`` (``n`` = the row's position, for the message).

    Raises:
        DataError: the cell holds a list.
    """
    value = row.get(column, "")
    if not isinstance(value, str):
        raise DataError(f"{path}: row {n} has a list in column {column!r}; expected text")
    return value


def require_columns(path: Path, rows: Sequence[dict[str, Any]], needed: Iterable[str]) -> None:
    """Check that the table has every column of ``needed``.

    Raises:
        DataError: ``<path>: no 'caption' column (columns: a, b)``.
    """
    have = list(rows[0])
    for col in needed:
        if col not in have:
            raise DataError(f"{path}: no {col!r} column (columns: {', '.join(have)})")


def pick_column(path: Path, rows: Sequence[dict[str, Any]], choices: Sequence[str]) -> str:
    """The first of ``choices`` that is a column of the table.

    Raises:
        DataError: none is (the message lists the columns).
    """
    for col in choices:
        if col in rows[0]:
            return col
    have = ", ".join(rows[0])
    raise DataError(f"{path}: needs a column named {' or '.join(repr(c) for c in choices)} (columns: {have})")


def optional_column(rows: Sequence[dict[str, Any]], choices: Sequence[str]) -> str | None:
    """The first of ``choices`` that is a column of the table, or None."""
    return next((c for c in choices if c in rows[0]), None)


def split_name(path: Path, where: str, value: str) -> str:
    """``train``, ``val`` or ``test`` for a split name of a file (``restval`` -> train, ``validation`` -> val).

    Raises:
        DataError: an unknown split name.
    """
    key = value.strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"{path}: {where} has split {value!r}; expected one of {', '.join(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the form stored in ids and groups)."""
    return path.relative_to(root).as_posix()


def safe_join(root: Path, rel: str, table: Path, where: str) -> str:
    """A path of a table cell, relative to ``root``, normalised; refused if empty or outside ``root``.

    Raises:
        DataError: an empty cell, an absolute path or one that climbs out of ``root``.
    """
    if not rel.strip():
        raise DataError(f"{table}: {where} has an empty file path")
    p = Path(rel.strip())
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"{table}: {where} has file path {rel!r}; expected a path inside {root}")
    return p.as_posix()
