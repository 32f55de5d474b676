"""The results store: one `RunRecord` per line of a JSON-lines file, appended and fsynced per cell.

A bench killed while writing leaves at most a torn last line. Reading recovers from it: the complete
lines are kept, the torn bytes are moved to ``<store>.torn`` (appended, never lost) and the file is cut
back to its last complete line, so the next append starts on a fresh line. A damaged line anywhere
else is not a torn write but a corrupted file, and is an error naming the line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import CheckpointError, MMUnlearnError
from ..results import RunRecord

log = logging.getLogger(__name__)


class StoreLockedError(MMUnlearnError):
    """Another bench is writing to the same results store."""


def _parse(line: bytes, path: Path, number: int) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}, line {number}: not a run record ({e}); fix or remove that line") from e


def _cut_torn_tail(path: Path, data: bytes) -> bytes:
    """Cut the unterminated last line off ``path``, appending it to ``<path>.torn``; returns what stays."""
    keep = data[: data.rfind(b"\n") + 1]
    with open(path.with_name(path.name + ".torn"), "ab") as f:
        f.write(data[len(keep) :] + b"\n")
    with open(path, "r+b") as f:
        f.truncate(len(keep))
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: its last line was torn (a killed write); kept in %s.torn, its cell runs again", path, path.name)
    return keep


def read_records(path: str | os.PathLike[str], *, repair: bool = True) -> list[RunRecord]:
    """Every record of a store, in file order (an absent file has none).

    Args:
        path: the JSON-lines file.
        repair: cut a torn (unterminated) last line off the file, see the module doc; False only
            reads around it.

    Raises:
        CheckpointError: a damaged complete line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # every append ends with a newline: this one never finished
        data = _cut_torn_tail(path, data) if repair else data[: data.rfind(b"\n") + 1]
    return [_parse(line, path, i + 1) for i, line in enumerate(data.split(b"\n")) if line.strip()]


def latest_by_cell(records: list[RunRecord]) -> dict[str, RunRecord]:
    """The last record of every bench cell (a retried failed cell keeps only its newest record)."""
    return {r.extras["cell"]: r for r in records if "cell" in r.extras}


class ResultStore:
    """Appends records to a JSON-lines file, one fsynced line per record, under an exclusive lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> list[RunRecord]:
        """Every record (repairing a torn last line)."""
        return read_records(self.path)

    def append(self, record: RunRecord) -> None:
        """Write one record as one line and make it durable before returning."""
        line = json.dumps(record.to_dict(), sort_keys=True, allow_nan=True) + "\n"
        with open(self.path, "ab") as f:
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    @contextlib.contextmanager
    def locked(self) -> Iterator[ResultStore]:
        """Hold ``<store>.lock`` for the duration (a second bench on the same store is refused).

        Raises:
            StoreLockedError: another process holds the lock.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise StoreLockedError(
                    f"another bench is writing to {self.path} (it holds {lock_path.name}); wait for it or use --store"
                ) from e
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
