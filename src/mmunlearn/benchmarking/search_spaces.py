"""The declared search space of every unlearning method, for the bench's tuning protocol (`tuning`).

A space maps config fields of the method to a distribution:

* ``("log", low, high)``: a float drawn log-uniformly (learning rates, loss weights spanning decades);
* ``("float", low, high)``: a float drawn uniformly (shares, mixing weights in [0, 1]);
* ``("int", low, high)``: an integer in [low, high] (epochs, steps, ranks);
* ``("categorical", (choice, ...))``: one of the choices (None, bool, int, float or str).

Every space holds its method's published default (a test checks it), so the first trial of a study can be
the default configuration and the tuned row is never chosen against a default it did not see. The learning
rate is searched log-uniformly around the default (from about a fifth to about five times it), the epochs or
steps over a small range, and the method's loss weights over the range its paper or code explored. Methods
that take no optimizer step (SSD, SLUG, MANU, subspace_edit, token_suppression, concept_guard) are searched
over their own knobs only: their ``lr`` and ``epochs`` are accepted and unused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

Distribution = tuple[Any, ...]
"""``("log", low, high)``, ``("float", low, high)``, ``("int", low, high)`` or ``("categorical", choices)``."""
Space = Mapping[str, Distribution]
KINDS = ("log", "float", "int", "categorical")

SEARCH_SPACES: dict[str, dict[str, Distribution]] = {
    "finetune": {"lr": ("log", 5e-5, 1e-3), "epochs": ("int", 1, 5)},
    "random_label": {"lr": ("log", 5e-5, 1e-3), "epochs": ("int", 1, 5)},
    "grad_ascent": {"lr": ("log", 2e-5, 5e-4), "epochs": ("int", 1, 5)},
    "neggrad_plus": {"lr": ("log", 1e-4, 2e-3), "epochs": ("int", 1, 5), "beta": ("float", 0.5, 0.99)},
    "l1_sparse": {"lr": ("log", 5e-5, 1e-3), "epochs": ("int", 1, 5), "alpha": ("log", 5e-6, 5e-4)},
    "boundary_shrink": {"lr": ("log", 2e-5, 5e-4), "epochs": ("int", 1, 5), "bound": ("float", 0.02, 0.3)},
    "salun": {"lr": ("log", 5e-5, 1e-3), "epochs": ("int", 1, 5), "mask_fraction": ("float", 0.1, 0.9)},
    "scrub": {
        "lr": ("log", 1e-4, 2e-3),
        "epochs": ("int", 1, 5),
        "msteps": ("int", 1, 3),
        "gamma": ("log", 0.25, 4.0),
        "alpha": ("log", 0.1, 2.0),
    },
    "multidelete": {
        "lr": ("log", 1e-4, 2e-3),
        "epochs": ("int", 1, 5),
        "alpha": ("log", 0.1, 10.0),
        "beta": ("log", 0.1, 10.0),
        "gamma": ("log", 0.1, 10.0),
    },
    # ReGUn's class-matched reference exists only for labelled data: the space keeps the two kinds-agnostic ones
    "regun": {
        "lr": ("log", 1e-4, 2.5e-3),
        "epochs": ("int", 2, 10),
        "retain_weight": ("float", 0.2, 0.9),
        "temperature": ("log", 0.5, 4.0),
        "reference": ("categorical", ("nearest", "uniform")),
        "batch_shared": ("categorical", (False, True)),
    },
    "coun": {
        "lr": ("log", 1e-4, 2.5e-3),
        "epochs": ("int", 1, 8),
        "cl_weight": ("log", 0.1, 6.0),
        "temperature": ("float", 0.05, 0.3),
        "shift": ("float", 0.0, 0.25),
    },
    "ccu": {
        "lr": ("log", 1e-4, 1e-3),
        "epochs": ("int", 1, 4),
        "lambda_a": ("log", 0.1, 4.0),
        "lambda_b": ("log", 0.1, 4.0),
        "lambda_c": ("log", 0.05, 2.0),
    },
    "cliperase": {
        "lr": ("log", 1e-4, 1e-3),
        "epochs": ("int", 1, 5),
        "lambda_rm": ("log", 0.1, 10.0),
        "lambda_fm": ("log", 0.3, 10.0),
        "lambda_cm": ("log", 0.3, 10.0),
    },
    "lora": {
        "lr": ("log", 2e-4, 5e-3),
        "epochs": ("int", 1, 8),
        "beta": ("float", 0.5, 0.99),
        "l1": ("log", 1e-6, 1e-3),
        "r": ("categorical", (2, 4, 8)),
    },
    "task_vector": {"lr": ("log", 2e-4, 5e-3), "epochs": ("int", 1, 8), "tolerance": ("float", 0.01, 0.2)},
    "ssd": {"alpha": ("log", 1.0, 50.0), "lam": ("log", 0.2, 5.0)},
    "slug": {
        "step_start": ("log", 0.02, 0.5),
        "step_factor": ("float", 1.5, 3.0),
        "criterion": ("categorical", ("accuracy", "validation")),
        "target_accuracy": ("float", 0.0, 0.3),
    },
    "manu": {
        "prune_ratio": ("log", 0.01, 0.1),
        "tau": ("log", 0.02, 0.5),
        "w_abs": ("float", 0.0, 4.0),
        "w_var": ("float", 0.0, 4.0),
        "w_rms": ("float", 0.0, 4.0),
    },
    "subspace_edit": {"gamma": ("float", 0.0, 4.0)},
    "token_suppression": {
        "scope": ("categorical", ("phrase", "words")),
        "min_forget_rate": ("float", 0.2, 0.9),
        "max_retain_rate": ("float", 0.01, 0.2),
    },
    "concept_guard": {
        "detector": ("categorical", ("logistic", "centroid")),
        "threshold_rule": ("categorical", ("fpr", "recall", "youden")),
        "target": ("float", 0.8, 0.99),
    },
    "logit_difference": {
        "lr": ("log", 2e-4, 5e-3),
        "epochs": ("int", 1, 8),
        "alpha": ("float", 0.2, 2.0),
        "relative_top": ("float", 0.0, 0.3),
        "retain_weight": ("log", 0.5, 20.0),
    },
}
"""Method key -> its search space."""

NOT_TUNED: dict[str, str] = {
    "retrain": "the reference every trial is scored against: it is the target, not a contender",
}
"""Registered methods without a search space, and why."""


def space_for(method: str) -> Space:
    """The search space of ``method``.

    Raises:
        ConfigError: the method has no declared space (named, with the methods that have one).
    """
    if method in SEARCH_SPACES:
        return SEARCH_SPACES[method]
    why = f" ({NOT_TUNED[method]})" if method in NOT_TUNED else ""
    raise ConfigError(
        f"method {method!r} has no search space{why}, so it cannot be tuned; declare one in "
        f"mmunlearn/benchmarking/search_spaces.py (tunable methods: {', '.join(sorted(SEARCH_SPACES))})"
    )


def check_space(space: Space, fields: Mapping[str, Any]) -> None:
    """Check that every name of ``space`` is a config field (``fields``: name -> default) and that every
    distribution is well formed and holds the field's default.

    Raises:
        ConfigError: an unknown field, a malformed distribution, or a default outside its range.
    """
    for name, dist in space.items():
        if name not in fields:
            raise ConfigError(f"search space names {name!r}, which is not a config field: {sorted(fields)}")
        if not dist or dist[0] not in KINDS:
            raise ConfigError(f"{name}: a distribution starts with one of {KINDS}, got {dist!r}")
        if not contains(dist, fields[name]):
            raise ConfigError(f"{name}: the default {fields[name]!r} lies outside {dist!r}")


def contains(dist: Distribution, value: Any) -> bool:
    """Whether ``value`` is a possible draw of ``dist`` (malformed distributions contain nothing)."""
    kind, *args = dist
    if kind == "categorical":
        return len(args) == 1 and isinstance(args[0], tuple) and value in args[0]
    if len(args) != 2 or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low, high = args
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int) and isinstance(value, int)):
        return False
    if kind == "log" and not low > 0:
        return False
    return bool(low <= value <= high and math.isfinite(value))


def config_defaults(config_class: type) -> dict[str, Any]:
    """Field name -> default of a config dataclass (fields without a default are left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """The config fields an Optuna ``trial`` draws from ``space`` (in the space's order)."""
    params: dict[str, Any] = {}
    for name, (kind, *args) in space.items():
        if kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(args[0]))
        elif kind == "int":
            params[name] = trial.suggest_int(name, args[0], args[1])
        else:
            params[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log")
    return params


def as_json(space: Space) -> dict[str, list[Any]]:
    """The space as JSON-ready lists (for cell keys and study hashes)."""
    return {
        name: [dist[0], *(list(a) if isinstance(a, tuple) else a for a in dist[1:])] for name, dist in space.items()
    }
