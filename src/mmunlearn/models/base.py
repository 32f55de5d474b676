"""The model registry and the base class of the built-in model families."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..configs import config_dict
from ..errors import ConfigError
from ..registry import Registry


class MultimodalModel(nn.Module):
    """What the built-in models share: a registry ``kind``, a frozen ``config`` that rebuilds them, a loss.

    A user's own model does not need this class: it needs the capabilities of a protocol in
    `mmunlearn.models.protocols` (see docs/own-model.md).
    """

    kind: ClassVar[str]
    modalities: tuple[str, ...]
    config: Any

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The training objective on one batch (a scalar)."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The constructor keywords that rebuild this model (JSON-ready)."""
        return config_dict(self.config)


MODELS: Registry[MultimodalModel] = Registry("model")
M = TypeVar("M", bound=nn.Module)


def build_model(kind: str, seed: int, **config: Any) -> MultimodalModel:
    """Create a registered model with initial weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MODELS.create(kind, **config)


def fresh_copy(model: M, seed: int) -> M:
    """The architecture of ``model`` with new initial weights drawn from ``seed`` (global RNG left untouched).

    A registered model is rebuilt from its kind and config, exactly as it was first built. Any other
    module is copied and every submodule's ``reset_parameters()`` is called; a parameter that no
    ``reset_parameters`` covers is an error (its initial value would be the trained one).

    Raises:
        ConfigError: a user model with parameters that cannot be re-initialised.
    """
    if isinstance(model, MultimodalModel) and getattr(model, "kind", None) in MODELS:
        return build_model(model.kind, seed, **model.config_dict()).to(next(model.parameters()).device)  # type: ignore[return-value]
    fresh = copy.deepcopy(model)
    covered: set[int] = set()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered |= {id(p) for p in module.parameters(recurse=False)}
    stale = [name for name, p in fresh.named_parameters() if id(p) not in covered]
    if stale:
        raise ConfigError(
            f"cannot re-initialise {type(model).__name__} for retraining: no reset_parameters() covers "
            f"{', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}; give the module that owns them a "
            "reset_parameters() method (see docs/own-model.md)"
        )
    return fresh
