"""Writing safetensors files: one byte sequence per content (the header in a fixed order), and tensor digests.

safetensors (0.8 here) keeps a file's string metadata in a hash map, so the order of its keys in
the JSON header, and with it the file's SHA-256, changes from one process to the next. A file
whose digest is recorded (shards in a manifest, checkpoints in ``SHA256SUMS``) must come out the
same from identical runs: :func:`canonical_safetensors` rewrites the header with every object's
keys sorted. The tensors' data is untouched: their offsets are relative to the end of the header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as serialise_safetensors

from atgan_plugin.atomic_files import atomic_write

__all__ = ["canonical_header", "canonical_safetensors", "header_of", "tensor_digest", "write_safetensors"]

_LENGTH_BYTES = 8  # the header's length, a little-endian u64, comes first
_ALIGN = 8  # safetensors pads the header with spaces so that the data starts 8-byte aligned


def header_of(data: bytes) -> tuple[dict[str, Any], int]:
    """The JSON header of ``data`` (a serialised safetensors file) and where its tensor data starts;
    a ``ValueError`` when ``data`` is too short for the length it declares or the header is not a JSON object."""
    length = int.from_bytes(data[:_LENGTH_BYTES], "little")
    if len(data) < _LENGTH_BYTES or len(data) < _LENGTH_BYTES + length:
        raise ValueError(f"a safetensors header of {length} bytes does not fit in {len(data)} bytes")
    header = json.loads(data[_LENGTH_BYTES : _LENGTH_BYTES + length])
    if not isinstance(header, dict):
        raise ValueError("a safetensors header is a JSON object")
    return header, _LENGTH_BYTES + length


def canonical_header(data: bytes) -> tuple[bytes, int]:
    """The length and JSON header of ``data`` with every object's keys sorted, compact and padded, and the
    offset in ``data`` where the tensor data starts: ``head + data[offset:]`` is the canonical file."""
    header, offset = header_of(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    return len(text).to_bytes(_LENGTH_BYTES, "little") + text, offset


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a serialised safetensors file) with its JSON header's keys sorted and compact."""
    head, offset = canonical_header(data)
    return head + data[offset:]


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: each name, dtype, shape and raw bytes (CPU tensors)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # The buffer itself, no copy. numpy's stubs give ndarray __buffer__ only on Python >= 3.12.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return digest.hexdigest()


def write_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Writes ``tensors`` as one safetensors file, atomically; returns the SHA-256 of its bytes.

    The file is serialised in memory and written through :func:`atomic_write` rather than with
    ``safetensors.torch.save_file``: recent safetensors releases (0.8.0 here) write through their
    own ``.tmpXXXXXX`` file, which a killed process leaves behind under a name that
    :func:`remove_stale_temporaries` cannot know is ours. The header is written in a fixed order
    (:func:`canonical_header`): the same tensors and metadata
    give the same bytes in every process.
    """
    data = serialise_safetensors(dict(tensors), metadata=metadata)
    head, offset = canonical_header(data)
    body = memoryview(data)[offset:]  # the tensors' bytes, not copied
    with atomic_write(path) as tmp, tmp.open("wb") as f:
        f.write(head)
        f.write(body)
    digest = hashlib.sha256(head)
    digest.update(body)
    return digest.hexdigest()
