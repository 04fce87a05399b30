"""Checkpoint formats and ``load_generator``, the one loader for every format we accept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from atgan_plugin.checkpoint_checks import CheckpointError, safetensors_truncation

__all__ = ["GeneratorFormat", "load_generator", "register_generator_format", "registered_formats"]


@dataclass(frozen=True)
class GeneratorFormat:
    """A checkpoint format: ``accepts(path)`` sniffs a file, ``load(path)`` returns an adapter."""

    name: str
    accepts: Callable[[Path], bool]
    load: Callable[[Path], nn.Module]


_FORMATS: dict[str, GeneratorFormat] = {}


def register_generator_format(fmt: GeneratorFormat) -> None:
    """Adds (or replaces) a format; adapters register themselves when imported."""
    _FORMATS[fmt.name] = fmt


def registered_formats() -> list[str]:
    return list(_FORMATS)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Loads a generator checkpoint of any registered format, as an adapter in eval mode.

    Raises:
        CheckpointError: the file is missing, a directory, truncated, or no registered format
            accepts it (and whatever the format's loader refuses).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"generator checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"generator checkpoint {path} does not exist")
    for fmt in _FORMATS.values():
        if fmt.accepts(path):
            return fmt.load(path).to(device).eval()
    truncation = safetensors_truncation(path)  # no format recognises a cut-off header: say so
    if truncation is not None:
        raise CheckpointError(
            f"{path} is a truncated safetensors file ({truncation}), not a loadable generator checkpoint"
        )
    raise CheckpointError(f"{path} is not a generator checkpoint of a known format (known: {', '.join(_FORMATS)})")
