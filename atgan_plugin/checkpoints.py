"""Safe, self-describing checkpoints.

Weights are stored with safetensors: loading one parses a JSON header and copies bytes, it can
never execute code. The header's string metadata holds, as JSON, the ``kind`` of network, the
constructor arguments (``config``) that rebuild it, and training facts (``training``), so a
file rebuilds its own network. Resumable training state (optimiser moments, RNG) is a plain
``torch.save`` dictionary read back with ``torch.load(weights_only=True)``, which refuses
arbitrary objects.

Every write goes to a temporary file in the target folder, is flushed to disk and then
renamed over the target: a crash leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "load_training_state",
    "save_checkpoint",
    "save_training_state",
]

FORMAT_VERSION = "1"
_META_KEY = "atgan_plugin"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, foreign, or of an unexpected kind."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    kind: str  # e.g. "classifier", "acwgan_gp.generator"
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # constructor arguments
    training: dict[str, Any] = field(default_factory=dict)  # command, seed, metrics, ...


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success renames it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)  # mkstemp creates 0600; give the file the permissions open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(path: str | Path, checkpoint: Checkpoint, *, half: bool = False) -> None:
    """Writes ``checkpoint`` atomically; ``half=True`` stores floating tensors as float16."""
    tensors = {}
    for name, tensor in checkpoint.tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        tensors[name] = tensor
    meta = {
        "format": FORMAT_VERSION,
        "kind": checkpoint.kind,
        "config": checkpoint.config,
        "training": checkpoint.training,
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})


def load_checkpoint(path: str | Path, *, expected_kind: str | None = None) -> Checkpoint:
    """Reads a checkpoint written by :func:`save_checkpoint`; floating tensors come back float32."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:  # header and tensors in one read
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or foreign file): {error}"
        ) from error
    if _META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file but not an atgan-plugin checkpoint")
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: corrupt metadata: {error}") from error
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    kind = str(meta.get("kind"))
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{path} holds a {kind!r} checkpoint, expected {expected_kind!r}")
    tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    return Checkpoint(kind, tensors, dict(meta.get("config", {})), dict(meta.get("training", {})))


def read_checkpoint_kind(path: str | Path) -> str | None:
    """The ``kind`` of an atgan-plugin checkpoint, or None for any other file (no tensors read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return str(json.loads(header[_META_KEY])["kind"])
    except Exception:  # any unreadable or foreign file: not ours
        return None


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


def module_from_checkpoint(
    checkpoint: Checkpoint, build: Callable[..., torch.nn.Module]
) -> torch.nn.Module:
    """Rebuilds a module with ``build(**checkpoint.config)`` and loads its tensors strictly."""
    module = build(**checkpoint.config)
    try:
        module.load_state_dict(checkpoint.tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint does not match its recorded architecture: {error}") from error
    return module
