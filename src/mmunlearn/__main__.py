"""``python -m mmunlearn``: the command-line interface."""

from .cli import entry

entry()
