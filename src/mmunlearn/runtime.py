"""Small torch helpers every layer uses: evaluation mode, seeding, batching, devices and threads."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

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
    """``"auto"`` picks CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked.

    Raises:
        ConfigError: an unknown device name, or a device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    missing = _missing_device(device)
    if missing:
        raise ConfigError(f"device {name!r} is not available: {missing}")
    return device


def _missing_device(device: torch.device) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "this machine (or this torch build) has no CUDA device; use --device cpu"
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else "MPS is not available on this machine; use --device cpu"
    return None


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


def idle_cores() -> int:
    """The cores this process may use minus the load other processes put on them (1-minute load average), >= 1."""
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on a Unix
        busy = 0.0
    return max(1, min(cores, round(cores - busy + 0.25)))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``$MMUNLEARN_THREADS``, else `idle_cores`.

    torch's default is one thread per core of the machine. When other processes keep those cores busy,
    its threads wait on each other at every operation (`benchmarks/threads_under_load.py`: with the 2
    cores busy, a training step took 1.7-2.2x longer with 2 threads than with 1), so the CLI starts with
    one thread per core that is not already busy. Returns the number set.
    """
    if threads is None:
        env = os.environ.get("MMUNLEARN_THREADS")
        try:
            threads = int(env) if env else idle_cores()
        except ValueError as e:
            raise ConfigError(f"$MMUNLEARN_THREADS must be an integer >= 1, got {env!r}") from e
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"the number of threads must be an integer >= 1, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


class LineProgress:
    """Progress for logs: a plain line about every 10% (no carriage returns), for output that is not a terminal."""

    def __init__(
        self, iterable: Iterable[Any] | None, total: int | None, desc: str, unit: str, initial: int = 0
    ) -> None:
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else len(iterable) if isinstance(iterable, Sized) else 0
        self.n, self.start, self.postfix = initial, time.perf_counter(), ""
        self._shown = self._tenth()

    def _tenth(self) -> int:
        return self.n * 10 // self.total if self.total else 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tenth() > self._shown:
            self._shown = self._tenth()
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        """Nothing to finish: the last line was printed when the count reached the total."""

    def _line(self) -> None:
        pct = f" ({100 * self.n // self.total}%)" if self.total else ""
        took = time.perf_counter() - self.start
        print(
            f"{self.desc}: {self.n}/{self.total} {self.unit}{pct} {took:.0f} s {self.postfix}".rstrip(),
            file=sys.stderr,
            flush=True,
        )


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
) -> Any:
    """A progress display: a tqdm bar on a terminal, `LineProgress` lines in a log, nothing when not ``enabled``."""
    if enabled and not sys.stderr.isatty():
        return LineProgress(iterable, total, desc, unit, initial)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not enabled, dynamic_ncols=True)
