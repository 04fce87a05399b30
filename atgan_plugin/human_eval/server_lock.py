"""One evaluation server per run folder: ``RUN_DIR/human-eval/server.lock``, held while it serves.

Two servers on one item set would each check "not answered yet" under their own lock and both
reply "saved" for the same item. The lock is an advisory ``flock`` on the file, which the kernel
drops when its process ends however it ends: a lock left by a killed server is stale and taken over
at once, and a reused PID can never keep it. The file holds the owner's PID, so that a refusal can
name it. The file itself is never deleted (deleting it would let two processes lock two files of one
name).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "ServerBusyError", "ServerLock"]

LOCK_FILE = "server.lock"


class ServerBusyError(RuntimeError):
    """Another ``atgan human-eval`` serves this run folder (the message names its PID)."""


class ServerLock:
    """The lock of ``folder`` (``RUN_DIR/human-eval``): :meth:`acquire` or a :class:`ServerBusyError`."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, **facts: Any) -> None:
        """Takes the lock and records this process's PID and ``facts`` (host, port) in the file."""
        if self.path.is_symlink():
            raise ServerBusyError(f"{self.path} is a link; remove it (a lock file must be a file of its own)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise ServerBusyError(
                f"another atgan human-eval ({owner}) serves {self.path.parent}: two servers would each save an "
                "answer to the same item; use its page, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps({"pid": os.getpid(), **facts}, sort_keys=True) + "\n").encode())
        os.fsync(fd)
        self._fd = fd

    def update(self, **facts: Any) -> None:
        """Rewrites the record (e.g. with the port once bound); the lock stays held."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps({"pid": os.getpid(), **facts}, sort_keys=True) + "\n").encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _owner(fd: int) -> str:
    """ "PID n, http://host:port/" as the owner recorded it (what the file holds is only read, never trusted)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError, RecursionError):
        return "its PID unreadable"
    if not isinstance(record, dict):
        return "its PID unreadable"
    where = f", http://{record.get('host')}:{record.get('port')}/" if record.get("port") else ""
    return f"PID {record.get('pid')!s:.20}{where[:80]}"
