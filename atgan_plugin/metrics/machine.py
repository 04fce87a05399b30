"""Where a measurement ran and how long it took: the machine description and the timing helpers.

Used by ``atgan reproduce`` (its time table), ``atgan evaluate`` (generation throughput) and the
scripts in ``benchmarks/``. Times from different machines are not comparable, ratios are; so every
time is printed next to the machine that measured it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["best_time", "machine", "machine_description", "machine_lines", "mean_time", "synchronize", "timed"]

Result = TypeVar("Result")


def machine(device: torch.device) -> dict[str, str]:
    """Platform, processor, cores, torch threads, versions and the device (with the GPU's name)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_lines(device: torch.device) -> list[str]:
    """:func:`machine` as ``key: value`` lines, for a benchmark's printout."""
    return [f"{key}: {value}" for key, value in machine(device).items()]


def machine_description(device: torch.device) -> str:
    """Processor, cores, torch threads and the device in one line (the heading of a time table)."""
    info = machine(device)
    text = f"{info['processor']}, {info['cpu_count']} CPU cores, {info['torch_threads']} torch threads, device {device}"
    if "gpu" in info:
        text += f" ({info['gpu']})"
    return text


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA runs asynchronously; a timer must not stop before it ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Result]) -> tuple[Result, float]:
    """``run()``'s result and the seconds it took (one call, no warm-up)."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def best_time(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Seconds of the best of ``repeats`` timed calls after one warm-up call (best-of resists noisy neighbours)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def mean_time(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Mean seconds of ``repeats`` calls timed together, after one warm-up call."""
    run()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    return (time.perf_counter() - start) / repeats
