"""Resumable training state: a plain dictionary of tensors, numbers and strings, written atomically.

``torch.save`` writes it; :func:`load_training_state` reads it back with ``torch.load(weights_only=True)``,
which refuses arbitrary objects, so no code in a state file can run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from atgan_plugin.atomic_files import atomic_write
from atgan_plugin.checkpoint_checks import CheckpointError

__all__ = ["load_training_state", "save_training_state"]


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically saves resumable training state (tensors, numbers, strings, nested dicts)."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Loads training state with ``weights_only=True``: no pickled code can run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad files
        raise CheckpointError(f"{path} is not a readable training-state file: {error}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a training-state dictionary")
    return state
