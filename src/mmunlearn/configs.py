"""Building frozen config dataclasses from plain values (CLI ``--set``, YAML, keyword arguments).

Every value is checked against its field's annotation before the dataclass is built, so a wrong type
is one `ConfigError` naming the field, the value and the expected type (``lr must be a number, got
'fast'``) instead of a failure deep inside torch. Ranges are checked by each config's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from .errors import ConfigError

T = TypeVar("T")

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def make_config(cls: type[T], values: dict[str, Any]) -> T:
    """Instantiate the frozen config dataclass ``cls`` from ``values``, every value type-checked.

    Raises:
        ConfigError: an unknown key, or a value that does not fit its field's type (or range).
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known keys: {sorted(known)}")
    hints = field_types(cls)
    return cls(**{k: check_value(k, v, hints.get(k, Any)) for k, v in values.items()})


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls`` (string annotations evaluated)."""
    return _field_types(cls)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def check_value(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the annotation ``hint``, normalised (lists to tuples, 2.0 to 2 for ints).

    Raises:
        ConfigError: ``<name> must be <expected>, got <value>``.
    """
    ok, out = _fit(value, hint)
    if ok and hint is Any and isinstance(out, list):
        out = tuple(out)  # frozen configs hold tuples
    if not ok:
        raise ConfigError(f"{name} must be {describe(hint)}, got {value!r}")
    return out


def describe(hint: Any) -> str:
    """An annotation in words: ``int | None`` -> ``"an integer or null"``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _NAMES:
        return _NAMES[hint]
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (tuple, list):
        item = args[0] if args and (origin is list or args[-1] is Ellipsis or len(set(args)) == 1) else Any
        return "a list" if item is Any else f"a list of {_plural(describe(item))}"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plural(words: str) -> str:
    """``"an integer"`` -> ``"integers"`` (for list descriptions)."""
    head = words.removeprefix("an ").removeprefix("a ")
    return head if " or " in head else f"{head}s"


def _fit(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits ``hint``, the normalised value)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if hint in _NAMES:
        return _fit_scalar(value, hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            ok, out = _fit(value, arg)
            if ok:
                return True, out
        return False, value
    if origin in (tuple, list) or hint in (tuple, list):
        return _fit_sequence(value, origin or hint, args)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _fit_mapping(value, args)
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # an annotation this checker does not model (Literal, a protocol...): the config decides


def _fit_scalar(value: Any, kind: type) -> tuple[bool, Any]:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool), value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, numbers.Integral), value if isinstance(value, int) else _int(value)
    if kind is float:
        return isinstance(value, numbers.Real), value if isinstance(value, int | float) else _float(value)
    return isinstance(value, kind), value


def _int(value: Any) -> Any:
    """A NumPy integer as a Python int (anything else unchanged)."""
    return int(value) if isinstance(value, numbers.Integral) else value


def _float(value: Any) -> Any:
    """A NumPy float as a Python float (anything else unchanged)."""
    return float(value) if isinstance(value, numbers.Real) else value


def _fit_sequence(value: Any, kind: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
    if not isinstance(value, list | tuple):
        return False, value
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            return False, value
        items = list(args)
    else:
        items = [args[0] if args else Any] * len(value)
    fitted = [_fit(v, h) for v, h in zip(value, items, strict=True)]
    if not all(ok for ok, _ in fitted):
        return False, value
    out = [v for _, v in fitted]
    return True, tuple(out) if kind is tuple else out


def _fit_mapping(value: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
    if not isinstance(value, Mapping):
        return False, value
    key_hint, value_hint = args if len(args) == 2 else (Any, Any)
    fitted = {}
    for k, v in value.items():
        ok_k, key = _fit(k, key_hint)
        ok_v, item = _fit(v, value_hint)
        if not (ok_k and ok_v):
            return False, value
        fitted[key] = item
    return True, fitted


def config_defaults(cls: type) -> dict[str, Any]:
    """The documented defaults of a config dataclass (for method cards and ``--set`` help)."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def config_dict(config: object) -> dict[str, Any]:
    """A config dataclass as JSON-ready keywords that rebuild it (tuples become lists)."""
    values = dataclasses.asdict(config)  # type: ignore[call-overload]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
