"""Data-parallel fits under ``torchrun``: a thin layer over ``torch.distributed``.

``torchrun --nproc-per-node N -m atgan_plugin.cli attack ...`` starts N processes; each one joins the
process group torchrun describes in its environment (:func:`init`: gloo on CPU, NCCL on CUDA, one
GPU per process by ``LOCAL_RANK``). The Python API (:class:`~atgan_plugin.attack.atgan.ATGANAttack`) stays
single-process; the CLI swaps in :class:`DataParallelATGANAttack`, which changes one thing, how a
fit is made:

- each process draws its own ``(z, y_s, ρ)`` from its own seed (:func:`rank_seed`; rank 0 keeps the
  seed, so one process under torchrun is the plain fit) and a share of the batch: ``batch_size`` (and
  the joint fit's batch per target) is the batch of a step over all processes, split evenly;
- after each backward pass the gradients are averaged over the processes with one ``all_reduce``
  (:func:`gradient_sync`), so every process takes the same Adam step and G_attack stays identical
  everywhere: the fit of one process with the whole batch, in about 1/N of the time.

Why not ``DistributedDataParallel``: the fit takes gradients with ``torch.autograd.grad`` (the target
model's ``.grad`` is never touched), and DDP reduces only inside ``.backward()``; the joint fit's
stacked parameters are not a module's either. The all-reduce above is what DDP does, in one bucket.

Only rank 0 writes run folders and reports; the other ranks fit (and, in ``atgan generate``, write
their own shards) and stay silent. A distilled guard (``guard="auto"``) is made by rank 0 first and
read from its cache by the others (on one machine, or with a shared ``--guard-cache-dir``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import FitResult, GradientSync
from atgan_plugin.attack.guards import AUTO
from atgan_plugin.utils import check_device

__all__ = [
    "DataParallelATGANAttack",
    "Distributed",
    "gradient_sync",
    "init",
    "launched_by_torchrun",
    "rank_seed",
    "split_batch",
]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: ``rank`` of ``world_size``, and the device it works on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def init(device: str = "auto") -> Distributed | None:
    """Joins torchrun's process group; ``None`` when this process was not started by torchrun.

    ``device``: ``"auto"`` (CUDA when available, one GPU per process by ``LOCAL_RANK``), ``"cpu"``,
    ``"cuda"`` (the same) or ``"cuda:N"`` (taken as given). The backend is NCCL for CUDA, gloo for CPU.
    """
    if not launched_by_torchrun():
        return None
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device in ("auto", "cuda"):
        resolved = (
            torch.device("cuda", local_rank) if torch.cuda.is_available() and device != "cpu" else torch.device("cpu")
        )
        if device == "cuda" and resolved.type != "cuda":
            raise ValueError("device 'cuda' was asked for, but CUDA is not available on this machine")
    else:
        resolved = check_device(device)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        check_device(resolved)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=resolved if resolved.type == "cuda" else None)
    return Distributed(rank, world_size, local_rank, resolved, backend)


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s seed: ``seed`` itself on rank 0, an independent stream (NumPy's ``SeedSequence``) elsewhere."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def split_batch(batch: int, world_size: int, what: str = "batch_size") -> int:
    """Each process's share of a batch of ``batch`` examples; a ``ValueError`` when it does not split evenly."""
    if batch % world_size:
        raise ValueError(
            f"{what} {batch} does not split evenly over {world_size} processes; use a multiple of {world_size}"
        )
    return batch // world_size


def gradient_sync(world_size: int) -> GradientSync:
    """``sync(loss, grads)``: averages ``grads`` in place over the group (one ``all_reduce`` of one flat
    buffer) and returns the group's mean ``loss``."""

    def sync(loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(-1).to(grads[0].dtype)])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view(g.shape))
            offset += g.numel()
        return flat[offset:].view(loss.shape).to(loss.dtype)

    return sync


class DataParallelATGANAttack(ATGANAttack):
    """:class:`~atgan_plugin.attack.atgan.ATGANAttack` whose fits run data-parallel over the process group.

    Built by the CLI under torchrun, with the same arguments as the attack plus ``distributed``. Every
    process of the group must make the same calls (same targets, in the same order). Progress bars
    show on rank 0 only.
    """

    def __init__(self, *args: Any, distributed: Distributed, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.distributed = distributed
        self.progress = self.progress and distributed.is_main
        split_batch(self.config.batch_size, distributed.world_size, "--batch-size")  # fail before any fit
        if self.options.joint_batch_size is not None:
            split_batch(
                min(self.options.joint_batch_size, self.config.batch_size), distributed.world_size, "--joint-batch-size"
            )

    def prepare_guard(self, device: str | torch.device | None = None) -> tuple[nn.Module, ...]:
        # Rank 0 distils (or reads) the guard first and caches it; the others then read its file.
        first = self._guards is None and self.guard == AUTO
        if first and not self.distributed.is_main:
            self.distributed.barrier()
        guards = super().prepare_guard(device)
        if first and self.distributed.is_main:
            self.distributed.barrier()
        return guards

    def _run_fits(
        self,
        classify: Any,
        targets: list[int | None],
        *,
        config: TransferConfig,
        batch_per_target: int,
        bounds: tuple[float, float],
        device: torch.device,
        guards: tuple[nn.Module, ...],
        sync: GradientSync | None,
    ) -> dict[int | None, FitResult]:
        world, rank = self.distributed.world_size, self.distributed.rank
        local = replace(config, batch_size=split_batch(config.batch_size, world), seed=rank_seed(config.seed, rank))
        fits = super()._run_fits(
            classify,
            targets,
            config=local,
            batch_per_target=split_batch(batch_per_target, world),
            bounds=bounds,
            device=device,
            guards=guards,
            sync=gradient_sync(world),
        )
        for fit in fits.values():  # record the fit as a whole: the batch over all processes, the run's seed
            fit.config = replace(fit.config, batch_size=fit.config.batch_size * world, seed=config.seed)
        return fits
