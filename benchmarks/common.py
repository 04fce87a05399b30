"""What the benchmark scripts share: the machine description and checkpoint defaults."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from atgan_plugin.pretrained import resolve_checkpoint

__all__ = ["best_time", "checkpoint", "machine", "machine_lines"]


def machine(device: torch.device) -> dict[str, str]:
    """Where a benchmark ran: numbers from different machines are not comparable, ratios are."""
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
    return [f"{key}: {value}" for key, value in machine(device).items()]


def checkpoint(path: Path | None, name: str) -> Path:
    """``path``, or the shipped Fashion-MNIST checkpoint ``name`` (SystemExit naming it when absent)."""
    try:
        return resolve_checkpoint(path, name)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}; pass the checkpoint's path explicitly") from error


def best_time(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Seconds of the best of ``repeats`` timed calls after one warm-up call (best-of resists noisy neighbours)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best
