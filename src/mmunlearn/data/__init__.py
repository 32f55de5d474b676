"""Data: core types, forget requests, the built-in dataset builders and their on-disk cache."""

from . import (  # noqa: F401  (importing registers the builders)
    av_digits,
    av_digits_video,
    emoji_captions,
    scenes_captions,
    shapes_captions,
)
from .builder import DATASETS, SIZES, SPLITS, BuiltData, DatasetBuilder
from .core import MultimodalDataset, Sample, SplitData
from .layouts import LAYOUTS, load_layout
from .loading import DatasetRef, load_dataset
from .request import ForgetRequest
from .store import DatasetSplits, build_dataset, default_data_dir

__all__ = [
    "DATASETS",
    "LAYOUTS",
    "SIZES",
    "SPLITS",
    "BuiltData",
    "DatasetBuilder",
    "DatasetRef",
    "DatasetSplits",
    "ForgetRequest",
    "MultimodalDataset",
    "Sample",
    "SplitData",
    "build_dataset",
    "default_data_dir",
    "load_dataset",
    "load_layout",
]
