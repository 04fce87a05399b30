"""One byte sequence per safetensors content: the header written in a fixed order.

safetensors (0.8 here) keeps a file's string metadata in a hash map, so the order of its keys in
the JSON header, and with it the file's SHA-256, changes from one process to the next. A file
whose digest is recorded (shards in a manifest, checkpoints in ``SHA256SUMS``) must come out the
same from identical runs: :func:`canonical_safetensors` rewrites the header with every object's
keys sorted. The tensors' data is untouched: their offsets are relative to the end of the header.
"""

from __future__ import annotations

import json

__all__ = ["canonical_safetensors"]

_LENGTH_BYTES = 8  # the header's length, a little-endian u64, comes first
_ALIGN = 8  # safetensors pads the header with spaces so that the data starts 8-byte aligned


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a serialised safetensors file) with its JSON header's keys sorted and compact."""
    length = int.from_bytes(data[:_LENGTH_BYTES], "little")
    header = json.loads(data[_LENGTH_BYTES : _LENGTH_BYTES + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _ALIGN)
    return len(text).to_bytes(_LENGTH_BYTES, "little") + text + data[_LENGTH_BYTES + length :]
