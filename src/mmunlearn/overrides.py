"""``--set key=value`` overrides of a config, shared by every command that takes them."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import yaml

from .errors import ConfigError

_FRACTION = re.compile(r"^\s*-?\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*$")


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML (numbers, booleans, null, lists), plus ``1e-3`` and fractions such as ``8/255``."""
    if _FRACTION.match(text):
        num, den = (Fraction(p.strip()) for p in text.split("/"))
        if den == 0:
            raise ConfigError(f"division by zero in {text!r}")
        return float(num / den)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse value {text!r}: {e}") from e
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        with contextlib.suppress(ValueError):
            return float(value)
    return value


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out
