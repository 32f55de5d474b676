"""A user's own PyTorch model from the command line: ``--model-factory package.module:function``.

The factory is imported and called with no arguments; it returns the `torch.nn.Module`. Weights come from a
safetensors file (never a pickle) and must match the module's state dict key for key and shape for shape.
What a method needs from the module is checked by the method itself (`mmunlearn.models.protocols.require`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError, ConfigError


def parse_factory(spec: str) -> tuple[str, str]:
    """``"package.module:function"`` -> (module, function).

    Raises:
        ConfigError: not of that form.
    """
    module, sep, name = spec.partition(":")
    if not sep or not module.strip() or not name.strip() or not name.isidentifier():
        raise ConfigError(f"--model-factory must look like 'package.module:function', got {spec!r}")
    return module.strip(), name.strip()


def build_from_factory(spec: str) -> nn.Module:
    """Import ``package.module:function``, call it, and check it returned a `torch.nn.Module`.

    Raises:
        ConfigError: the module cannot be imported, has no such function, or the function fails or returns
            something that is not a module.
    """
    module_name, name = parse_factory(spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import {module_name!r} for --model-factory {spec!r}: {e}") from e
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError(f"module {module_name!r} has no function {name!r} (--model-factory {spec!r})")
    try:
        model = factory()
    except Exception as e:  # the user's code: report what failed, with the factory's name
        raise ConfigError(f"--model-factory {spec!r} failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model-factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: nn.Module, weights: str | os.PathLike[str]) -> nn.Module:
    """Load a safetensors state dict into ``model`` (strict: every key, every shape).

    Raises:
        CheckpointError: missing or unreadable file, a pickle, or weights that do not fit the module (the
            message names the first missing, unexpected or mis-shaped keys).
    """
    path = Path(weights)
    if path.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}:
        raise CheckpointError(f"{path}: only safetensors weights are read (pickle files can run code)")
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = [
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        ]
        raise CheckpointError(f"{path} does not fit the module: {'; '.join(parts)}")
    model.load_state_dict(state)
    return model
