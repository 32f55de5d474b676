"""One generic registry used by every family (datasets, models, unlearners, protectors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not hold; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly instead
        return str(self.args[0])


class Registry(Generic[T]):
    """A named table of factories (usually classes) of one family.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("tiny")
        ... class Tiny: ...
        >>> MODELS.create("tiny")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under ``name``; a second registration of a name is an error."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists the known names.
        """
        if name not in self._entries:
            known = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return self._entries[name]

    def create(self, name: str, **config: Any) -> T:
        """Instantiate the factory registered under ``name`` with ``config`` as keyword arguments."""
        return self.get(name)(**config)

    def names(self) -> list[str]:
        """Sorted names of every registered entry."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
