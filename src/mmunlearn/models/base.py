"""The model registry and the config plumbing shared by every model family."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry[nn.Module] = Registry("model")


def make_config(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate the frozen config dataclass ``cls`` from ``values``; unknown keys are a `ConfigError`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class MultimodalModel(nn.Module):
    """What every model offers the training loop, checkpoints and unlearning methods.

    Subclasses set ``kind`` (the registry key), keep their frozen config in ``self.config`` and implement
    `loss`: the model's own training objective on a batch (see `MultimodalDataset.batch`).
    """

    kind: ClassVar[str]
    modalities: tuple[str, ...]

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The training objective on one batch (a scalar)."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this model (JSON-ready)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.config).items()}  # type: ignore[attr-defined]
