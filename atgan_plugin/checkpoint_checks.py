"""Integrity checks on checkpoint files and their tensors, made before anything is built or trusted.

A file that starts like safetensors but falls short of its header is reported as truncated, not
foreign; a file without a digest may be vouched for by a ``SHA256SUMS`` beside it; declared tensor
names, dtypes and shapes are compared with the network the config describes (built on the meta
device); floating weights must be finite. Every failure is a :class:`CheckpointError`.
:mod:`atgan_plugin.checkpoints` re-exports the public names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "UnverifiedCheckpointWarning",
    "check_declared_tensors",
    "check_finite",
    "describe_tensors",
    "safetensors_truncation",
    "vouched_by_sums",
]

# torch dtype -> the dtype name safetensors declares in a file's header.
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_DTYPE_NAMES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign, corrupt, or of an unexpected kind."""


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint without a tensor digest was loaded: corruption of its bytes cannot be detected."""


def safetensors_truncation(path: str | Path) -> str | None:
    """How a file that starts like a safetensors file falls short of what its header declares, or None.

    Reads only the 8-byte length and the header: a way to tell "truncated" from "foreign".
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            declared = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
            if len(prefix) < 8 or not 2 <= declared <= 100_000_000:  # safetensors' own header limit
                return None
            head = f.read(min(declared, size))
    except OSError:
        return None
    if not head.startswith(b"{"):
        return None
    if 8 + declared > size:
        return f"its header declares {declared} bytes, only {size - 8} follow"
    try:
        entries = json.loads(head)
        end = max((int(e["data_offsets"][1]) for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, AttributeError):
        return None
    if 8 + declared + end > size:
        return f"its tensors need {end} bytes of data, only {size - 8 - declared} follow"
    return None


def vouched_by_sums(path: Path) -> bool:
    """Whether a ``SHA256SUMS`` beside ``path`` lists it (CheckpointError when it lists another digest)."""
    sums = path.parent / "SHA256SUMS"
    try:
        if not sums.is_file() or sums.stat().st_size > 1_000_000:
            return False
        lines = sums.read_text(errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        digest, _, name = line.strip().partition(" ")
        if name.strip().lstrip("*") == path.name:
            actual = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    actual.update(block)
            if actual.hexdigest() != digest.lower():
                raise CheckpointError(
                    f"{path} does not match its SHA256SUMS entry: the file is corrupt or was replaced"
                )
            return True
    return False


def describe_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``name -> (safetensors dtype name, shape)``, the form :func:`check_declared_tensors` compares."""
    return {name: (_DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for name, t in tensors.items()}


def check_finite(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuses floating tensors holding NaN or infinite values: corrupt weights."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{where}: tensor {name!r} holds {bad} NaN or infinite values (corrupt weights)")


def check_declared_tensors(declared: Mapping[str, tuple[str, tuple[int, ...]]], network: nn.Module, where: str) -> None:
    """Compares declared ``name -> (dtype, shape)`` with ``network``'s state dict (names, shapes, dtype kind)."""
    expected = {name: tensor for name, tensor in network.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: the file does not match its recorded architecture: "
            f"missing {missing[:5]}, unexpected {[name[:80] for name in unexpected[:5]]}"
        )
    for name, tensor in expected.items():
        dtype, shape = declared[name]
        if shape != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: the file does not match its recorded architecture: tensor {name!r} has "
                f"shape {shape[:8]} in the file, the architecture needs {tuple(tensor.shape)}"
            )
        wanted = _DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype))
        if not (dtype == wanted or (tensor.is_floating_point() and dtype in _FLOAT_DTYPES)):
            raise CheckpointError(
                f"{where}: the file does not match its recorded architecture: tensor {name!r} is "
                f"stored as {dtype[:20]}, the architecture needs {wanted}"
            )
