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
    """One run of a scenario: method, config, seed, metrics, cost and software versions.

    ``extras`` holds what a report needs beyond the figures: the bench cell it belongs to (dataset, size,
    request or victim, status, error), the command and machine that made it, a 2-D feature projection.
    """

    scenario: str
    method: str
    config: dict[str, Any]
    seed: int
    metrics: list[MetricResult]
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The inverse of `to_dict` (a ``KeyError``/``TypeError`` on a dict of another shape)."""
        metrics = [MetricResult(**m) for m in data["metrics"]]
        return cls(
            scenario=data["scenario"],
            method=data["method"],
            config=dict(data["config"]),
            seed=int(data["seed"]),
            metrics=metrics,
            seconds=float(data["seconds"]),
            versions=dict(data.get("versions", {})),
            extras=dict(data.get("extras", {})),
        )

    def value(self, name: str, split: str) -> float | None:
        """One metric's value, or None when the record does not have it."""
        return next((m.value for m in self.metrics if m.name == name and m.split == split), None)
