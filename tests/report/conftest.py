"""Fixtures of the report tests: a synthetic results store (written in milliseconds, no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_store import METHODS, protect_records, unlearn_records, write_store


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty methods (long names, three seeds), an unknown metric, and a protection grid."""
    return write_store(tmp_path_factory.mktemp("wide") / "results.jsonl", unlearn_records(METHODS) + protect_records())
