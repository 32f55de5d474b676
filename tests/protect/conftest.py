"""Fixtures of the protection tests: a tiny constructed caption set and the small shapes set."""

from __future__ import annotations

import pytest
from caption_toy import make_captions

from mmunlearn.data import load_dataset
from mmunlearn.data.core import MultimodalDataset
from mmunlearn.data.store import DatasetSplits


@pytest.fixture
def toy() -> MultimodalDataset:
    return make_captions()


@pytest.fixture(scope="session")
def shapes_small() -> DatasetSplits:
    return load_dataset("shapes-captions", "small", 0)
