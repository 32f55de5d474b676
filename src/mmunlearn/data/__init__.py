"""Data: core types, forget requests, the built-in dataset builders and their on-disk cache."""

from . import av_digits, emoji_captions, shapes_captions  # noqa: F401  (importing registers the builders)
from .builder import DATASETS, SIZES, SPLITS, BuiltData, DatasetBuilder
from .core import MultimodalDataset, Sample, SplitData
from .request import ForgetRequest
from .store import DatasetSplits, build_dataset, default_data_dir, load_dataset

__all__ = [
    "DATASETS",
    "SIZES",
    "SPLITS",
    "BuiltData",
    "DatasetBuilder",
    "DatasetSplits",
    "ForgetRequest",
    "MultimodalDataset",
    "Sample",
    "SplitData",
    "build_dataset",
    "default_data_dir",
    "load_dataset",
]
