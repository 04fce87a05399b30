"""Safe, self-describing checkpoints.

Weights are stored with safetensors: loading one parses a JSON header and copies bytes, it can
never execute code. The header's string metadata holds, as JSON, the ``kind`` of network, the
constructor arguments (``config``) that rebuild it, training facts (``training``) and a SHA-256
digest of the tensors (names, dtypes, shapes and bytes), so a file rebuilds its own network and
corruption is caught. Resumable training state (optimiser moments, RNG) is a plain
``torch.save`` dictionary read back with ``torch.load(weights_only=True)``, which refuses
arbitrary objects.

Loading validates before it allocates (:func:`load_module`): the header is read without the
tensor data; the config is compared with the family's bounds (:mod:`atgan_plugin.limits`); the
network is built on the ``meta`` device (no memory) and the declared tensor names, dtypes and
shapes are compared with it; only then are the tensors read, their digest and finiteness
checked, and the real network built. Every failure is a :class:`CheckpointError` naming the file
and the problem. Files written before the digest existed still load, with an
:class:`UnverifiedCheckpointWarning`, unless a ``SHA256SUMS`` beside them vouches for their bytes.
The checks themselves live in :mod:`atgan_plugin.checkpoint_checks`.

Every write is atomic (:mod:`atgan_plugin.atomic_files`): a crash leaves either the old file or
the new one, never half. Both modules' public names are importable from here too.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from atgan_plugin.atomic_files import atomic_write, remove_stale_temporaries
from atgan_plugin.checkpoint_checks import (
    CheckpointError,
    UnverifiedCheckpointWarning,
    check_declared_tensors,
    check_finite,
    describe_tensors,
    safetensors_truncation,
    vouched_by_sums,
)
from atgan_plugin.safetensors_files import tensor_digest, write_safetensors
from atgan_plugin.training_state import load_training_state, save_training_state

if TYPE_CHECKING:
    from atgan_plugin.limits import Fields

__all__ = [
    "Architecture",
    "Checkpoint",
    "CheckpointError",
    "Header",
    "UnverifiedCheckpointWarning",
    "add_tensor_digest",
    "atomic_write",
    "check_declared_tensors",
    "check_finite",
    "describe_tensors",
    "load_checkpoint",
    "load_module",
    "load_training_state",
    "read_header",
    "remove_stale_temporaries",
    "save_checkpoint",
    "save_training_state",
    "tensor_digest",
    "write_safetensors",
]

_T = TypeVar("_T")

FORMAT_VERSION = "1"
_META_KEY = "atgan_plugin"
_DIGEST_KEY = "tensors_sha256"  # in the metadata JSON, beside kind/config/training
# A checkpoint may carry other networks ("parts", e.g. a generator's guard classifiers): their tensors are
# stored as "parts/<name>/<key>" ("/" never occurs in a state_dict key), their kind/config/training
# under "parts" in the metadata. One level deep, a few at most.
_PART_PREFIX = "parts/"
_PART_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_PARTS = 8
SHIPPED_ROOT = Path(__file__).resolve().parent / "pretrained"  # the package's own checkpoints carry digests


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    kind: str  # e.g. "classifier", "acwgan_gp.generator"
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)  # constructor arguments
    training: dict[str, Any] = field(default_factory=dict)  # command, seed, metrics, ...
    parts: dict[str, Checkpoint] = field(default_factory=dict)  # networks carried along, e.g. a generator's guards


@dataclass(frozen=True)
class Header:
    """What a checkpoint declares, read without its tensor data."""

    path: Path
    kind: str
    config: dict[str, Any]
    training: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (safetensors dtype such as "F16", shape)
    digest: str | None  # SHA-256 of the tensors (tensor_digest), None in files written before it existed
    parts: dict[str, Header] = field(default_factory=dict)  # what each part declares (no parts of parts)


@dataclass(frozen=True)
class Architecture:
    """How a checkpoint kind becomes a network: ``build(**config)``, once ``config`` passes ``schema``."""

    build: Callable[..., nn.Module]
    schema: Fields


# ------------------------------------------------------------------------------------------------
# Writing.


def save_checkpoint(path: str | Path, checkpoint: Checkpoint, *, half: bool = False) -> None:
    """Writes ``checkpoint`` (and its parts) atomically, with its tensors' digest; ``half=True`` stores
    floating tensors as float16."""
    if len(checkpoint.parts) > _MAX_PARTS:
        raise ValueError(f"a checkpoint carries at most {_MAX_PARTS} parts, got {len(checkpoint.parts)}")
    named = [("", checkpoint.tensors)]
    for part_name, part in checkpoint.parts.items():
        if not _PART_NAME.fullmatch(part_name) or part.parts:
            raise ValueError(
                f"part names are 1-64 letters, digits, '_', '.' or '-', and parts carry no parts; got {part_name!r}"
            )
        named.append((f"{_PART_PREFIX}{part_name}/", part.tensors))
    tensors = {}
    for prefix, part_tensors in named:
        for name, tensor in part_tensors.items():
            tensor = tensor.detach().cpu().contiguous()
            if half and tensor.is_floating_point():
                tensor = tensor.half()
            tensors[prefix + name] = tensor
    meta = {
        "format": FORMAT_VERSION,
        "kind": checkpoint.kind,
        "config": checkpoint.config,
        "training": checkpoint.training,
        _DIGEST_KEY: tensor_digest(tensors),
    }
    if checkpoint.parts:
        meta["parts"] = {
            name: {"kind": p.kind, "config": p.config, "training": p.training} for name, p in checkpoint.parts.items()
        }
    write_safetensors(path, tensors, {_META_KEY: json.dumps(meta)})


# ------------------------------------------------------------------------------------------------
# Reading: the header, then the tensors.


def _existing_file(path: Path, what: str = "checkpoint") -> None:
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    truncation = safetensors_truncation(path)
    if truncation is not None:
        return CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated: {truncation})")
    return CheckpointError(f"{path} is not a readable safetensors checkpoint (truncated or foreign file): {error}")


def read_header(path: str | Path, *, expected_kind: str | None = None) -> Header:
    """The header of a checkpoint written by :func:`save_checkpoint`; no tensor data is read."""
    path = Path(path)
    _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            declared = {}
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                view = f.get_slice(name)
                declared[name] = (str(view.get_dtype()), tuple(int(n) for n in view.get_shape()))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as error:
        raise _unreadable(path, error) from error
    if _META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file but not an atgan-plugin checkpoint")
    try:
        meta = json.loads(header[_META_KEY])
    except (json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{path}: corrupt metadata: {error}") from error
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt metadata: expected a JSON object, found {type(meta).__name__}")
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {str(meta.get('format'))[:40]!r}")
    kind = _metadata_field(path, "kind", meta.get("kind"), str)
    config = _metadata_field(path, "config", meta.get("config", {}), dict)
    training = _metadata_field(path, "training", meta.get("training", {}), dict)
    digest = meta.get(_DIGEST_KEY)
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise CheckpointError(f"{path}: corrupt metadata: {_DIGEST_KEY} is not a SHA-256 hex digest")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{path} holds a {kind[:80]!r} checkpoint, expected {expected_kind!r}")
    parts = _part_headers(path, meta.get("parts", {}), declared)
    return Header(path, kind, config, training, declared, digest, parts)


def _metadata_field(path: Path, name: str, value: object, expected: type[_T]) -> _T:
    """``value`` when it is an ``expected``, else the CheckpointError naming what was found instead."""
    if not isinstance(value, expected):
        raise CheckpointError(
            f"{path}: corrupt metadata: {name} is a {type(value).__name__}, expected a {expected.__name__}"
        )
    return value


def _part_headers(path: Path, described: Any, declared: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, Header]:
    """Moves the ``parts/<name>/...`` entries out of ``declared`` into one header per described part."""
    if not isinstance(described, dict) or len(described) > _MAX_PARTS:
        raise CheckpointError(f"{path}: corrupt metadata: 'parts' is not a mapping of at most {_MAX_PARTS} parts")
    parts: dict[str, Header] = {}
    for name, info in described.items():
        if not _PART_NAME.fullmatch(str(name)) or not isinstance(info, dict):
            raise CheckpointError(f"{path}: corrupt metadata: part {str(name)[:64]!r} is not a described part")
        kind, config, training = info.get("kind"), info.get("config", {}), info.get("training", {})
        if not (isinstance(kind, str) and isinstance(config, dict) and isinstance(training, dict)):
            raise CheckpointError(f"{path}: corrupt metadata: part {name!r} lacks a kind, config or training record")
        parts[name] = Header(path, kind, config, training, {}, None)
    for key in [k for k in declared if k.startswith(_PART_PREFIX)]:
        name, _, sub = key[len(_PART_PREFIX) :].partition("/")
        if name not in parts or not sub:
            raise CheckpointError(f"{path}: tensor {key[:80]!r} belongs to no described part")
        parts[name].tensors[sub] = declared.pop(key)
    return parts


def _read_tensors(header: Header) -> dict[str, torch.Tensor]:
    """The tensors of a checked header (its parts' under ``parts/<name>/``), their digest and finiteness
    verified; floating ones as float32."""
    path = header.path
    names = list(header.tensors) + [
        f"{_PART_PREFIX}{part}/{key}" for part, h in header.parts.items() for key in h.tensors
    ]
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in names}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as error:
        raise _unreadable(path, error) from error
    if header.digest is not None:
        if tensor_digest(tensors) != header.digest:
            raise CheckpointError(
                f"{path}: the tensors do not match the digest recorded with them: the file is corrupt"
            )
    elif _shipped(path):
        raise CheckpointError(
            f"{path} is a shipped checkpoint without the digest of its tensors: the package's files all carry "
            "one, so this file was replaced or damaged; reinstall atgan-plugin"
        )
    elif not vouched_by_sums(path):
        warnings.warn(
            f"{path} records no digest of its tensors (written by an older atgan-plugin), so corruption "
            "cannot be detected; save it again to add one",
            UnverifiedCheckpointWarning,
            stacklevel=3,
        )
    check_finite(tensors, str(path))
    return {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}


def _shipped(path: Path) -> bool:
    """Whether ``path`` is one of the package's own checkpoints (under ``atgan_plugin/pretrained``)."""
    return path.resolve().is_relative_to(SHIPPED_ROOT)


def add_tensor_digest(path: str | Path) -> bool:
    """Rewrites a checkpoint written before digests existed with the digest of its tensors: the same tensors,
    dtypes and metadata (atomically). Only a file that a ``SHA256SUMS`` beside it vouches for gets one (a digest
    of damaged bytes would vouch for them); returns False when the file has a digest already."""
    path = Path(path)
    header = read_header(path)
    if header.digest is not None:
        return False
    if not vouched_by_sums(path):
        raise CheckpointError(f"{path} is not listed in a SHA256SUMS beside it: its bytes cannot be vouched for")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})[_META_KEY])
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    meta[_DIGEST_KEY] = tensor_digest(tensors)
    write_safetensors(path, tensors, {_META_KEY: json.dumps(meta)})
    return True


def load_checkpoint(path: str | Path, *, expected_kind: str | None = None) -> Checkpoint:
    """Reads a checkpoint written by :func:`save_checkpoint`; floating tensors come back float32.

    Raises:
        CheckpointError: missing, a directory, truncated, foreign, of another kind, a digest
            mismatch or a non-finite weight.
    """
    header = read_header(path, expected_kind=expected_kind)
    return _checkpoint(header, _read_tensors(header))


def _checkpoint(header: Header, tensors: dict[str, torch.Tensor]) -> Checkpoint:
    """Splits what :func:`_read_tensors` read into the checkpoint and its parts."""
    parts = {
        name: Checkpoint(
            h.kind,
            {key: tensors.pop(f"{_PART_PREFIX}{name}/{key}") for key in h.tensors},
            dict(h.config),
            dict(h.training),
        )
        for name, h in header.parts.items()
    }
    return Checkpoint(header.kind, tensors, dict(header.config), dict(header.training), parts)


def read_checkpoint_kind(path: str | Path) -> str | None:
    """The ``kind`` of an atgan-plugin checkpoint, or None for any other file (no tensors read)."""
    try:
        return read_header(path).kind
    except CheckpointError:  # any unreadable or foreign file: not ours
        return None


# ------------------------------------------------------------------------------------------------
# Networks: bounds, then shapes on the meta device, then weights.


def _skeleton(architecture: Architecture, config: dict[str, Any], where: str) -> nn.Module:
    """The network ``config`` describes, built on the meta device (no memory) once its bounds hold."""
    from atgan_plugin.limits import config_problem

    problem = config_problem(config, architecture.schema)
    if problem is not None:
        raise CheckpointError(f"{where}: {problem}")
    try:
        with torch.device("meta"):
            return architecture.build(**config)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as error:
        raise CheckpointError(f"{where}: cannot build the network its config describes: {error}") from error


def module_from_checkpoint(checkpoint: Checkpoint, architecture: Architecture, where: str = "checkpoint") -> nn.Module:
    """Rebuilds a module with ``architecture.build(**checkpoint.config)`` (bounds checked first) and
    loads its tensors strictly."""
    check_declared_tensors(
        describe_tensors(checkpoint.tensors), _skeleton(architecture, checkpoint.config, where), where
    )
    module = architecture.build(**checkpoint.config)
    try:
        module.load_state_dict(checkpoint.tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{where}: checkpoint does not match its recorded architecture: {error}") from error
    return module


def _architecture_of(header: Header, architectures: Mapping[str, Architecture], where: str) -> Architecture:
    architecture = architectures.get(header.kind)
    if architecture is None and not architectures:
        raise CheckpointError(f"{where} is a {header.kind[:80]!r} network this loader does not read")
    if architecture is None:
        raise CheckpointError(
            f"{where} holds a {header.kind[:80]!r} checkpoint, expected "
            f"{' or '.join(repr(kind) for kind in architectures)}"
        )
    return architecture


def load_module(
    path: str | Path,
    architectures: Mapping[str, Architecture],
    part_architectures: Mapping[str, Architecture] | None = None,
) -> tuple[nn.Module, Checkpoint]:
    """The network a checkpoint of one of the ``architectures`` kinds holds, and the checkpoint.

    Validates before it allocates: bounds on the config, then the declared tensors against the
    network built on the meta device, then the tensors' digest and finiteness, then the real build.
    The parts the file carries are checked the same way against ``part_architectures`` (a file
    with parts is refused when none are given); the caller builds them from ``checkpoint.parts``.
    """
    header = read_header(path)
    where = str(header.path)
    architecture = _architecture_of(header, architectures, where)
    check_declared_tensors(header.tensors, _skeleton(architecture, header.config, where), where)
    for name, part in header.parts.items():
        part_where = f"{where} (part {name})"
        part_architecture = _architecture_of(part, part_architectures or {}, part_where)
        check_declared_tensors(part.tensors, _skeleton(part_architecture, part.config, part_where), part_where)
    checkpoint = _checkpoint(header, _read_tensors(header))
    return module_from_checkpoint(checkpoint, architecture, where), checkpoint


# ------------------------------------------------------------------------------------------------
# Training state.
