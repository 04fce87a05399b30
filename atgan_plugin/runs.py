"""Run folders: ``<root>/00001-<name>/``, numbered so runs never overwrite each other.

A command writes ``options.json`` when it starts and ``complete.json`` (``{"complete": true, ...}``)
only once all its outputs are written, so a run that was killed is recognisable: it has no
``complete.json`` (:func:`is_complete`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from atgan_plugin.checkpoints import atomic_write

__all__ = ["COMPLETE_MARKER", "RunFolderError", "is_complete", "mark_complete", "new_run_dir", "write_json"]

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
