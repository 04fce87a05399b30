"""What the benchmark scripts share: the machine description and timing (from :mod:`atgan_plugin.metrics.machine`,
the same as ``atgan reproduce``'s) and checkpoint defaults."""

from __future__ import annotations

from pathlib import Path

from atgan_plugin.metrics.machine import best_time, machine, machine_lines
from atgan_plugin.pretrained import pretrained_path

__all__ = ["best_time", "checkpoint", "machine", "machine_lines"]


def checkpoint(path: Path | None, name: str) -> Path:
    """``path``, or the shipped Fashion-MNIST checkpoint ``name`` (SystemExit naming it when absent)."""
    if path is not None:
        return path
    try:
        return pretrained_path(name)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}; pass the checkpoint's path explicitly") from error
