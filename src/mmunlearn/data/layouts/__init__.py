"""Datasets on disk in their published layouts (nothing is ever downloaded).

Image-caption: ``karpathy``, ``coco``, ``imagefolder``, ``csv``. Audio-visual: ``av-frames``, ``av-csv``.
`load_layout` returns the `DatasetSplits` that `mmunlearn.data.load_dataset` returns for the built-in
sets; ``load_dataset(path, layout=name)`` calls it. See ``docs/data-layouts.md``.
"""

from . import av, captions  # noqa: F401  (importing registers the layouts)
from .load import load_layout, prepare_layout
from .spec import LAYOUTS, Item, Layout, LayoutOptions, Plan

__all__ = ["LAYOUTS", "Item", "Layout", "LayoutOptions", "Plan", "load_layout", "prepare_layout"]
