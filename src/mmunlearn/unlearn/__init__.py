"""Unlearning methods: one file per method, registry key = file name."""

from . import (  # noqa: F401  (importing registers the methods)
    boundary_shrink,
    ccu,
    finetune,
    grad_ascent,
    l1_sparse,
    multidelete,
    neggrad_plus,
    random_label,
    retrain,
    salun,
    scrub,
)
from .base import UNLEARNERS, UnlearnConfig, Unlearner, present_only

__all__ = ["UNLEARNERS", "UnlearnConfig", "Unlearner", "present_only"]
