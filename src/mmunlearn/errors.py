"""Error types. Every user-facing error derives from `MMUnlearnError`; the CLI prints its message."""

from __future__ import annotations


class MMUnlearnError(Exception):
    """Base of every error caused by a bad input or state that the user can fix."""


class ConfigError(MMUnlearnError, ValueError):
    """A configuration value or key is invalid."""


class DataError(MMUnlearnError, ValueError):
    """A dataset, request or data file is invalid."""


class UnknownIdError(MMUnlearnError, KeyError):
    """Sample ids that are not in the dataset."""

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointError(MMUnlearnError):
    """A checkpoint is missing, unreadable, truncated or tampered with."""


class DivergenceError(MMUnlearnError):
    """The loss became NaN or inf; the last good weights were restored."""
