"""Atomic file writes: a crash leaves either the old file or the new one, never half of one.

Every write goes to a temporary file in the target folder, is flushed to disk and then renamed
over the target. A killed process can leave its temporary file behind; :func:`remove_stale_temporaries`
clears those, and only those: a temporary is recognised by a name no one else writes, never by a
suffix (a user's ``.draft.20240101.tmp`` stays). The name is ``.atgan-tmp.<random>.<tag>.<target>``:
``<random>`` 16 hex digits drawn per write, ``<tag>`` the first 8 hex digits of a SHA-256 of
``<random>`` under our own label, so the name records its random part and vouches for it. Used by
checkpoints, run folders, shards and reports.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "is_our_temporary", "remove_stale_temporaries", "temporary_name"]

_PREFIX = ".atgan-tmp."
_LABEL = b"atgan-plugin atomic_write temporary\0"
_NAME = re.compile(r"\.atgan-tmp\.([0-9a-f]{16})\.([0-9a-f]{8})\.(.*)", re.DOTALL)
_TARGET_CHARS = 64  # of the target's name, kept in the temporary's for whoever looks at the folder


def _tag(random_part: str) -> str:
    return hashlib.sha256(_LABEL + random_part.encode("ascii")).hexdigest()[:8]


def temporary_name(target_name: str) -> str:
    """A fresh temporary's name for a file ``target_name``: ``.atgan-tmp.<random>.<tag>.<target_name>``."""
    random_part = secrets.token_hex(8)
    return f"{_PREFIX}{random_part}.{_tag(random_part)}.{target_name[:_TARGET_CHARS]}"


def is_our_temporary(name: str) -> bool:
    """Whether a file name is one :func:`temporary_name` made (its tag matches its random part)."""
    match = _NAME.fullmatch(name)
    return match is not None and secrets.compare_digest(match.group(2), _tag(match.group(1)))


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success renames it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:  # O_EXCL: never write into a file that exists, however unlikely the clash
        tmp = target.parent / temporary_name(target.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)  # created 0600; give the file the permissions open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes the temporary files :func:`atomic_write` left in ``folder`` when its process was killed.

    Only files whose name :func:`is_our_temporary` recognises, that are regular files and not
    links; nothing else is touched. Only for a folder no other process is writing to at the same
    time (its live temporaries would go too). Returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if is_our_temporary(p.name) and p.is_file() and not p.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
