"""What the benchmark scripts share: the machine description and timing (from :mod:`atgan_plugin.metrics.machine`,
the same as ``atgan reproduce``'s) and checkpoint defaults."""

from __future__ import annotations

from pathlib import Path

from atgan_plugin.metrics.machine import best_time, machine, machine_lines, mean_time
from atgan_plugin.pretrained import resolve_checkpoint

__all__ = ["best_time", "checkpoint", "machine", "machine_lines", "mean_time"]


def checkpoint(path: Path | None, name: str) -> Path:
    """``path``, or the shipped Fashion-MNIST checkpoint ``name`` (SystemExit naming it when absent)."""
    try:
        return resolve_checkpoint(path, name)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}; pass the checkpoint's path explicitly") from error
