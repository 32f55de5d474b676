"""Building frozen config dataclasses from plain values (CLI ``--set``, YAML, keyword arguments)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def make_config(cls: type[T], values: dict[str, Any]) -> T:
    """Instantiate the frozen config dataclass ``cls`` from ``values``; unknown keys are a `ConfigError`."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def config_defaults(cls: type) -> dict[str, Any]:
    """The documented defaults of a config dataclass (for method cards and ``--set`` help)."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def config_dict(config: object) -> dict[str, Any]:
    """A config dataclass as JSON-ready keywords that rebuild it (tuples become lists)."""
    values = dataclasses.asdict(config)  # type: ignore[call-overload]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
