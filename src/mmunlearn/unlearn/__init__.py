"""Unlearning methods: one file per method, registry key = file name."""

from . import (  # noqa: F401  (importing registers the methods)
    boundary_shrink,
    ccu,
    cliperase,
    concept_guard,
    coun,
    finetune,
    grad_ascent,
    l1_sparse,
    logit_difference,
    lora,
    manu,
    multidelete,
    neggrad_plus,
    random_label,
    regun,
    retrain,
    salun,
    scrub,
    slug,
    ssd,
    subspace_edit,
    task_vector,
    token_suppression,
)
from .base import UNLEARNERS, Run, Step, UnlearnConfig, UnlearnData, Unlearner, present_only
from .retrain import retrain_config

__all__ = ["UNLEARNERS", "Run", "Step", "UnlearnConfig", "UnlearnData", "Unlearner", "present_only", "retrain_config"]
