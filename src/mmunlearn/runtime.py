"""Small torch helpers every layer uses: evaluation mode, seeding, batching, devices and threads."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from .errors import ConfigError

log = logging.getLogger(__name__)
Batch = dict[str, Tensor]


class Switchable(Protocol):
    """What `eval_mode` needs: a module's train/eval switch."""

    training: bool

    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...


class HasParameters(Protocol):
    """What `model_device` needs."""

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...


@contextlib.contextmanager
def eval_mode(model: Switchable) -> Iterator[None]:
    """Evaluation mode without gradients, restoring the previous train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the previous state afterwards."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[Tensor]:
    """The shuffled index batches of one epoch (a pure function of its arguments).

    The last incomplete batch is dropped when there is more than one batch, so contrastive losses
    never see a tiny batch.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; other names are passed to `torch.device`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e


def model_device(model: HasParameters) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def to_device(batch: Mapping[str, Tensor], device: torch.device) -> Batch:
    """A batch on ``device`` (no copy for tensors already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``$MMUNLEARN_THREADS``, else the cores this process may use.

    torch's default counts every core of the machine, and with other processes on the same cores its
    threads wait on each other; one thread per available core avoids that. Returns the number set.
    """
    if threads is None:
        env = os.environ.get("MMUNLEARN_THREADS")
        threads = int(env) if env else available_cores()
    if threads < 1:
        raise ConfigError(f"the number of threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads
