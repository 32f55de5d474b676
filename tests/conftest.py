"""Shared fixtures: tiny in-memory datasets (no builder needed) and a per-test data cache."""

from __future__ import annotations

import os

import pytest
import torch

from bench_tiny import run_tiny
from mmunlearn.data.core import MultimodalDataset
from toy import make_av

# Unit-test models are tiny: one thread is faster than two and immune to a busy machine.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MMUNLEARN_THREADS", "1")  # the CLI, run in-process by the tests, sets torch's threads


@pytest.fixture
def tiny_av() -> MultimodalDataset:
    return make_av()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test builds datasets under one session-wide temporary cache, never the user's."""
    monkeypatch.setenv("MMUNLEARN_DATA", str(tmp_path_factory.getbasetemp() / "data-cache"))  # = data_cache


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory):
    """The session's dataset cache (the one `_isolated_data_dir` points MMUNLEARN_DATA at)."""
    return tmp_path_factory.getbasetemp() / "data-cache"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, data_cache):
    """The results store of the tiny real bench (run once per test session; read it, do not write it)."""
    return run_tiny(tmp_path_factory.mktemp("tiny-bench"), data_cache)
