"""Run folders: ``<root>/00001-<name>/``, numbered so runs never overwrite each other.

A command writes ``options.json`` when it starts and ``complete.json`` (``{"complete": true, ...}``)
only once all its outputs are written, so a run that was killed is recognisable: it has no
``complete.json`` (:func:`is_complete`). A file named by a run folder's own files (an image path in
``items.json``) is read only through :func:`path_inside`, which keeps it inside the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from atgan_plugin.checkpoints import atomic_write

__all__ = [
    "COMPLETE_MARKER",
    "RunFolderError",
    "is_complete",
    "mark_complete",
    "new_run_dir",
    "path_inside",
    "write_json",
]

COMPLETE_MARKER = "complete.json"


class RunFolderError(FileNotFoundError):
    """A folder is not the run folder a command needs (the message says why)."""


def new_run_dir(root: str | Path, name: str) -> Path:
    """Creates and returns the next numbered folder under ``root`` (e.g. ``runs/00003-demo``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := re.match(r"(\d{5})-", p.name))]
    number = max(numbers, default=0) + 1
    while True:  # another process may take a number between our scan and mkdir
        path = root / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def write_json(path: str | Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def mark_complete(folder: str | Path, **facts: Any) -> None:
    """Records that the run in ``folder`` finished: ``complete.json`` with ``complete: true`` and ``facts``."""
    write_json(Path(folder) / COMPLETE_MARKER, {"complete": True, **facts})


def is_complete(folder: str | Path) -> bool:
    """Whether the run in ``folder`` finished (its ``complete.json`` says so)."""
    try:
        return json.loads((Path(folder) / COMPLETE_MARKER).read_text()).get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def path_inside(root: str | Path, relative: str, what: str = "file") -> Path:
    """``root / relative`` when it stays inside ``root``; a :class:`RunFolderError` naming ``what`` otherwise.

    ``relative`` is a POSIX path as a run folder's files record it: an absolute path, a drive, a
    backslash or a ``..`` part is refused, and so is a path that a link (anywhere along it, ``root``'s
    own links resolved first) leads out of ``root``. The file need not exist.
    """
    if not isinstance(relative, str) or not relative or "\\" in relative or "\0" in relative:
        raise RunFolderError(f"{what} {relative!r} is not a relative path inside {root}")
    parts = PurePosixPath(relative)
    if parts.is_absolute() or PureWindowsPath(relative).drive or ".." in parts.parts:
        raise RunFolderError(f"{what} {relative!r} leaves {root} (an absolute path or '..')")
    path = Path(root) / parts
    try:
        inside = path.resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError) as error:  # a loop of links (RuntimeError before Python 3.13)
        raise RunFolderError(f"{what} {relative!r} cannot be resolved ({error})") from None
    if not inside:
        raise RunFolderError(f"{what} {relative!r} is a link leading out of {root}")
    return path
