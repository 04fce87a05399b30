"""Small shared helpers: device choice, seeding, model-state guards."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

__all__ = ["check_device", "eval_mode", "model_device", "resolve_device", "seed_everything"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else as :func:`check_device`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` parsed, and checked to exist on this machine; a ``ValueError`` naming it otherwise.

    So that an attack asked for ``device="cuda"`` on a machine without a GPU fails when it is made,
    not at its first call.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type != "cpu":
        try:
            torch.empty(0, device=resolved)
        except (RuntimeError, AssertionError, NotImplementedError) as error:
            raise ValueError(f"device {device!r} is not available on this machine: {error}") from None
    return resolved


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch; returns a CPU ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def model_device(model: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of the first parameter or buffer of ``model`` (``default`` when it has none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return default if default is not None else torch.device("cpu")


@contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Puts ``modules`` in eval mode and restores every submodule's own ``training`` flag after.

    Restoring per submodule (not a single ``train(was_training)``) keeps mixed states, such as a
    frozen batch-norm inside a training model, exactly as the caller left them.
    """
    saved = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    for module in modules:
        if module is not None:
            module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training
