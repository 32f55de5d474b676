"""Result records, written as JSON lines; reports read only these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricResult:
    """One number.

    Attributes:
        name: metric name, e.g. ``"acc_image"``.
        split: which data it was measured on, e.g. ``"test"``.
        value: the figure.
        higher_is_better: direction (None where neither is better, e.g. a forget metric whose target is retrain's value).
        chance: the chance level of the metric where it has one.
    """

    name: str
    split: str
    value: float
    higher_is_better: bool | None = True
    chance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """One run of a scenario: method, config, seed, metrics, cost and software versions."""

    scenario: str
    method: str
    config: dict[str, Any]
    seed: int
    metrics: list[MetricResult]
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)
