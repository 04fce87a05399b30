"""One byte sequence per safetensors content: the header written in a fixed order.

safetensors (0.8 here) keeps a file's string metadata in a hash map, so the order of its keys in
the JSON header, and with it the file's SHA-256, changes from one process to the next. A file
whose digest is recorded (shards in a manifest, checkpoints in ``SHA256SUMS``) must come out the
same from identical runs: :func:`canonical_safetensors` rewrites the header with every object's
keys sorted. The tensors' data is untouched: their offsets are relative to the end of the header.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["canonical_header", "canonical_safetensors", "header_of"]

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
