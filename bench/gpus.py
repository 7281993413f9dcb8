"""Placing process workers on GPUs: which GPUs are visible, how many workers share each
(``--cells-per-gpu K``), and whether a GPU has the memory for its workers before they start.

With ``K`` cells per GPU every worker gets a ``1 / K`` share of its GPU's memory: the parent
starts a worker only where that share is free (at least :data:`MIN_FREE_OF_SHARE` of it, for
each worker starting there at once), and the worker caps its own allocator at the share
(``torch.cuda.set_per_process_memory_fraction``), so that a cell that needs more fails with
CUDA's out-of-memory error, recorded FAILED with that reason, instead of starving its
neighbours. A cell is never moved to the CPU.

Free memory is read with ``nvidia-smi`` (no CUDA context in the parent) where the driver
ships it, else with ``torch.cuda.mem_get_info``; tests replace :func:`gpu_memory`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

import torch

from bench.errors import ConfigError

GIB = 2**30
MIN_FREE_OF_SHARE = 0.9  # CUDA contexts and the driver take some of a GPU's total


@dataclass(frozen=True)
class GpuMemory:
    """A GPU's free and total memory, in bytes."""

    free: int
    total: int


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` or all)."""
    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_memory(gpu: str) -> GpuMemory:
    """Free and total memory of GPU ``gpu`` (an index or a UUID, as in
    ``CUDA_VISIBLE_DEVICES``)."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        out = subprocess.run(
            [smi, f"--id={gpu}", "--query-gpu=memory.free,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            free, total = (int(part.split()[0]) * 2**20 for part in out.stdout.split(","))
            return GpuMemory(free, total)
    index = _visible_index(gpu)
    free, total = torch.cuda.mem_get_info(index)
    return GpuMemory(free, total)


def _visible_index(gpu: str) -> int:
    """This process's CUDA index of ``gpu``."""
    gpus = visible_gpus()
    return gpus.index(gpu) if gpu in gpus else int(gpu)


@dataclass(frozen=True)
class GpuPlan:
    """One GPU per worker slot (``None`` on a machine without GPUs) and the share of its
    GPU's memory each worker may allocate (1.0: no cap)."""

    slots: tuple[str | None, ...]
    share: float

    @property
    def share_label(self) -> str:
        return "1" if self.share == 1.0 else f"1/{round(1 / self.share)}"


def plan_workers(
    gpus: list[str], workers: int | None, cells_per_gpu: int | None, default_workers: int
) -> GpuPlan:
    """Slots for ``workers`` (default: ``cells_per_gpu`` per GPU, else ``default_workers``)
    placed round-robin over ``gpus``, at most ``cells_per_gpu`` on one GPU."""
    if cells_per_gpu is None:
        count = workers or default_workers
        slots = tuple(gpus[i % len(gpus)] if gpus else None for i in range(count))
        return GpuPlan(slots, 1.0)
    if not gpus:
        raise ConfigError(
            f"--cells-per-gpu {cells_per_gpu} needs a CUDA GPU, and none is visible here: "
            "drop --cells-per-gpu (or check CUDA_VISIBLE_DEVICES)"
        )
    capacity = cells_per_gpu * len(gpus)
    count = workers or capacity
    if count > capacity:
        raise ConfigError(
            f"--workers {count} do not fit {len(gpus)} GPU(s) at --cells-per-gpu "
            f"{cells_per_gpu}: give at most --workers {capacity}, or raise --cells-per-gpu"
        )
    return GpuPlan(tuple(gpus[i % len(gpus)] for i in range(count)), 1.0 / cells_per_gpu)


def check_memory(gpus: list[str], share: float) -> None:
    """Raise a :class:`ConfigError` unless every GPU in ``gpus`` (one entry per worker about
    to start on it) has the free memory for those workers' shares."""
    for gpu, starting in Counter(gpus).items():
        found = gpu_memory(gpu)
        need = starting * share * found.total * MIN_FREE_OF_SHARE
        if found.free < need:
            raise ConfigError(
                f"GPU {gpu} has {found.free / GIB:.1f} GiB free of {found.total / GIB:.1f}, less "
                f"than the {need / GIB:.1f} GiB that {starting} worker(s) of a "
                f"{share * found.total / GIB:.1f} GiB share need: free the GPU, or lower "
                "--cells-per-gpu or --workers"
            )


def cap_memory(share: float) -> None:
    """Cap this process's CUDA allocator at ``share`` of its GPU (in a worker, before any
    cell); nothing without CUDA or without a cap."""
    if share < 1.0 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(share, 0)
