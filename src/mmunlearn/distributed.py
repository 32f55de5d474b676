"""Data-parallel training and unlearning under ``torchrun`` (PyTorch `DistributedDataParallel`).

Launched by ``torchrun --nproc_per_node N -m mmunlearn train|forget ...``, every process (rank) runs the
same command. The loops (`mmunlearn.train.train_model`, `Unlearner.run`) then:

* build the same seeded global batch order on every rank and give each rank its `shard` of every global
  batch, so that a step sees the same global batch as one process;
* compute the loss through `data_parallel`: the model's objective (``model.loss(batch)``, a method's
  ``loss(model, run, step)``) runs inside a small module (`LossModule`) wrapped in PyTorch's own
  `DistributedDataParallel`, whose backward averages the gradients over the ranks;
* scale each rank's loss by its share of the global batch (`shard_weight`), so that the averaged
  gradient of a loss that is a mean over the batch is the gradient of the global batch's mean loss;
* decide everything that could branch (the divergence guard, resuming) from values that are the same on
  every rank: the global mean loss (`global_mean`), identical weights, rank 0's saved state (`share`).

Without torchrun (no ``WORLD_SIZE`` > 1 in the environment) no process group exists, `active` is False
and the loops run exactly the code they ran before: `data_parallel` returns the plain objective.

The helpers that talk to other ranks are collective: every rank must call them, in the same order.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as collectives
from torch import Tensor, nn

from .errors import ConfigError

T = TypeVar("T")

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched(env: dict[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several ranks."""
    env = dict(os.environ) if env is None else env
    if not all(env.get(k) for k in TORCHRUN_VARS):
        return False
    try:
        return int(env["WORLD_SIZE"]) > 1
    except ValueError as e:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {env['WORLD_SIZE']!r}") from e


def rank_device(device: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its node.

    ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK`` (one GPU per process) when CUDA is present, ``auto``
    means the CPU otherwise; an explicit ``cuda:N`` or ``cpu`` is kept.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank >= count:
            raise ConfigError(f"local rank {local_rank} needs cuda:{local_rank}, but this node has {count} GPU(s)")
        return torch.device("cuda", local_rank)
    return torch.device(device)


def init_from_env(device: str = "auto") -> str:
    """Join the process group torchrun's environment describes; return the device this rank uses.

    Without torchrun (see `launched`) nothing happens and ``device`` comes back unchanged. The backend
    is NCCL when the rank's device is a GPU, gloo on the CPU. Calling it again is harmless.
    """
    if not launched():
        return device
    chosen = rank_device(device, int(os.environ["LOCAL_RANK"]))
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return str(chosen)


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    if active_group():
        dist.destroy_process_group()


def active_group() -> bool:
    """Whether a process group is initialised (of any size)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active_group() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if active_group() else 1


def active() -> bool:
    """Whether the loops run data-parallel: a process group of more than one process."""
    return world_size() > 1


def is_main() -> bool:
    """Whether this is rank 0: the process that writes files and prints (True without a process group)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (a no-op without a process group)."""
    if active():
        dist.barrier()


def shard(indices: Tensor, rank_: int | None = None, world: int | None = None) -> Tensor:
    """This rank's part of one global batch's sample indices: a contiguous slice.

    The slices of ranks 0..N-1, concatenated, are the global batch in its order, and their sizes differ
    by at most one (the first ``len % N`` ranks take one more). Contiguous rather than strided: the global
    order is already a seeded shuffle, so either is as random, and contiguous keeps rank ``r``'s samples
    the ``r``-th block of the one-process batch (what an all-gather in rank order reassembles).

    Raises:
        ConfigError: fewer samples than ranks (a rank would get an empty batch).
    """
    r = rank() if rank_ is None else rank_
    n = world_size() if world is None else world
    if len(indices) < n:
        raise ConfigError(f"a batch of {len(indices)} samples cannot be split over {n} processes; use a larger batch")
    return torch.tensor_split(indices, n)[r]


def shard_weight(mine: int, total: int) -> float:
    """The factor that makes DDP's average of per-rank mean losses the mean over the global batch.

    DDP averages gradients: (1/N) sum_r grad(L_r). With L_r the mean over n_r of the batch's B samples,
    scaling L_r by N * n_r / B gives sum_r (n_r / B) grad(L_r) = grad of the global mean (1.0 for equal shards).
    """
    return world_size() * mine / total


def _device_for_collectives() -> torch.device:
    """Where small tensors for collectives live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def global_mean(loss: Tensor, mine: int, total: int) -> float:
    """The global batch's mean loss from each rank's mean over its ``mine`` of ``total`` samples (collective).

    The same float on every rank, so a divergence check on it takes the same branch everywhere.
    """
    value = loss.detach().to(_device_for_collectives(), torch.float64) * (mine / total)
    dist.all_reduce(value)
    return float(value)


def gather_rows(rows: Tensor) -> tuple[Tensor, int]:
    """Every rank's ``rows`` concatenated in rank order, and where this rank's rows start (collective).

    Differentiable: the backward sends each row's gradient back to the rank it came from, summed over the
    ranks that used it (`torch.distributed.nn.functional.all_gather`), so a loss over the gathered rows on
    every rank gives each rank the whole gradient of its own rows. Ranks may hold different numbers of rows
    (the shards of `shard` differ by one): they are padded for the exchange and cut after it. Without a
    process group of several ranks: ``(rows, 0)``.
    """
    if not active():
        return rows, 0
    counts = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor([len(rows)], device=rows.device))
    sizes = [int(c) for c in counts]
    pad = max(sizes) - len(rows)
    padded = torch.cat([rows, rows.new_zeros(pad, *rows.shape[1:])]) if pad else rows
    with warnings.catch_warnings():  # its replacement (_functional_collectives) is private; this one is public
        warnings.simplefilter("ignore", FutureWarning)
        parts = collectives.all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)]), sum(sizes[: rank()])


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (collective; ``flag`` itself without a process group)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], device=_device_for_collectives())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def share(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and return its result on every rank (collective; just ``fn()`` without one).

    An exception ``fn`` raises on rank 0 is raised on every rank, so that no rank waits for the others.
    The result travels pickled (`torch.distributed.broadcast_object_list`): for small states.
    """
    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = (True, fn())
        except Exception as e:
            box[0] = (False, e)
    dist.broadcast_object_list(box, src=0, device=_device_for_collectives())
    ok, value = box[0]
    if not ok:
        raise value
    return value


def sync_rng() -> None:
    """Give every rank rank 0's global torch RNG state (CPU, and the current GPU's under NCCL) (collective)."""
    if not active():
        return
    states = share(lambda: (torch.get_rng_state(), torch.cuda.get_rng_state() if _on_gpu() else None))
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state(states[1])


def _on_gpu() -> bool:
    return dist.get_backend() == "nccl"


def writes_to(folder: str | os.PathLike[str] | None) -> bool:
    """Whether this rank writes ``folder``: each distinct folder is written by one rank only (collective).

    Rank 0 writes its folder; another rank writes its own only when it is not rank 0's (a private
    folder, as the CLI gives the other ranks). Always True without a process group.
    """
    if not active():
        return True
    mine = None if folder is None else str(Path(folder).resolve())
    main = share(lambda: mine)
    return is_main() or mine != main


class LossModule(nn.Module):
    """``forward(*args) = fn(model, *args)``: an objective as a module's forward, the model a submodule.

    DDP hooks a module's forward and its parameters; our models are trained through ``model.loss(batch)``
    and ``Unlearner.loss(model, run, step)``, not ``forward``, so this module is what DDP wraps.
    """

    def __init__(self, model: nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Any) -> Tensor:
        return self.fn(self.model, *args)


def data_parallel(model: nn.Module, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """The objective ``fn(model, *args)`` as a callable whose backward averages gradients over the ranks.

    Without a process group of several ranks it is ``fn`` bound to ``model`` (no wrapper, no hooks).
    Under torchrun it is ``DistributedDataParallel(LossModule(model, fn))`` with:

    * ``find_unused_parameters=True``: an objective need not touch every parameter (a method that
      trains only some layers, a model whose loss skips a head); DDP then marks the others ready;
    * ``device_ids=None``: the batches are on the device already, and DDP must not try to move a
      method's arguments (runs, datasets) there;
    * ``broadcast_buffers=True`` (the default): buffers follow rank 0's.

    Building it copies rank 0's parameters and buffers to the other ranks (they are equal already).
    Drop it once the loop is over: its hooks go with it.
    """
    if not active():
        return lambda *args: fn(model, *args)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(LossModule(model, fn), device_ids=None, find_unused_parameters=True)
