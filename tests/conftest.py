"""Shared fixtures: tiny in-memory datasets (no builder needed) and a per-test data cache."""

from __future__ import annotations

import pytest

from mmunlearn.data.core import MultimodalDataset
from toy import make_av


@pytest.fixture
def tiny_av() -> MultimodalDataset:
    return make_av()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test builds datasets under one session-wide temporary cache, never the user's."""
    monkeypatch.setenv("MMUNLEARN_DATA", str(tmp_path_factory.getbasetemp() / "data-cache"))
