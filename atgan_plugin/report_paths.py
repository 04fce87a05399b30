"""Paths as report.html shows them: never the absolute path of the machine that ran the command.

The run's JSON files keep absolute paths (they say exactly what was read, for a rerun on that machine); the
page is mailed and published, so at display time each absolute path becomes, in this order:

- inside the run folder: relative to it (``g_attack.safetensors``);
- inside the folder of runs that holds it: relative to the run folder (``../00001-fit/g_attack.safetensors``);
- a checkpoint shipped with the package (``…/atgan_plugin/pretrained/<dataset>/<name>.safetensors``, on this
  machine or any other): ``shipped: <name>`` (``shipped: <dataset>/<name>`` for a dataset other than
  Fashion-MNIST);
- anything else: ``…/<file name>``.

:func:`without_absolute_paths` applies that to every string of a JSON value, whole or inside text such as
the command line.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

from atgan_plugin import pretrained

__all__ = ["path_for_display", "shipped_checkpoint", "without_absolute_paths"]

_DEFAULT_DATASET = "fashion-mnist"  # the shipped checkpoints' dataset: named without it
_PACKAGE_PARTS = ("atgan_plugin", "pretrained")
# An absolute path inside text: POSIX after a space, quote, '=' or bracket (not inside a URL, a fraction or a
# relative path), or a Windows drive. It ends at white space, a separator or a quote.
_IN_TEXT = re.compile(r"(?<![\w.~:/\\-])/[^\s,;:'\"<>|()\[\]{}]+|\b[A-Za-z]:[\\/][^\s,;'\"<>|()\[\]{}]*")


def _is_absolute(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or bool(PureWindowsPath(text).drive)


def _parsed(text: str) -> PurePath:
    return PureWindowsPath(text) if PureWindowsPath(text).drive else PurePosixPath(text)


def shipped_checkpoint(path: str) -> tuple[str, str] | None:
    """``(dataset, name)`` of a checkpoint shipped with the package (``name`` without its suffix, e.g.
    ``("fashion-mnist", "model_a")`` or ``("fashion-mnist", "targets/A-nor")``); None for any other path.

    Recognised under this machine's package folder or, for a run made elsewhere, by the package's layout."""
    parsed = _parsed(path)
    parts = _relative_parts(parsed, pretrained.ROOT)
    for i in range(len(parsed.parts) - 1):
        if parts is None and parsed.parts[i : i + 2] == _PACKAGE_PARTS:
            parts = parsed.parts[i + 2 :]
    if parts is None or len(parts) < 2:
        return None
    return parts[0], str(PurePosixPath(*parts[1:]).with_suffix(""))


def _relative_parts(path: PurePath, folder: Path) -> tuple[str, ...] | None:
    """The parts of ``path`` below ``folder`` (as written, or both resolved); None when it is not inside.
    Only POSIX paths are resolved: a Windows path cannot lead into a folder of this machine."""
    candidates = [(path, folder)]
    if isinstance(path, PurePosixPath):
        candidates.append((Path(path).resolve(), folder.resolve()))
    for candidate, base in candidates:
        try:
            return PurePosixPath(candidate).relative_to(PurePosixPath(base)).parts
        except (ValueError, TypeError):
            continue
    return None


def _relative(path: PurePath, folder: Path) -> str | None:
    parts = _relative_parts(path, folder)
    return None if parts is None else "/".join(parts) or "."


def path_for_display(path: str, run_dir: Path) -> str:
    """``path`` as the report of ``run_dir`` shows it (a relative path is shown as it is)."""
    if not _is_absolute(path):
        return path
    parsed = _parsed(path)
    inside = _relative(parsed, run_dir)
    if inside is not None:
        return inside
    beside = _relative(parsed, run_dir.parent)
    if beside is not None:
        return "../" + beside if beside != "." else ".."
    shipped = shipped_checkpoint(path)
    if shipped is not None:
        dataset, name = shipped
        return f"shipped: {name}" if dataset == _DEFAULT_DATASET else f"shipped: {dataset}/{name}"
    return f"…/{parsed.name}" if parsed.name else "…"


def _text_for_display(text: str, run_dir: Path) -> str:
    """``text`` with its absolute paths shown by :func:`path_for_display`. Runs record several paths joined by
    ", " (the guards): each piece that is one absolute path, spaces and all, is one path; in any other piece
    (a command line) the paths are found by :data:`_IN_TEXT`."""
    pieces = text.split(", ")
    return ", ".join(
        path_for_display(piece, run_dir)
        if "\n" not in piece and _is_absolute(piece)
        else _IN_TEXT.sub(lambda match: path_for_display(match.group(0), run_dir), piece)
        for piece in pieces
    )


def without_absolute_paths(data: Any, run_dir: Path) -> Any:
    """A copy of the JSON value ``data`` with every absolute path in its strings (values and keys) shown by
    :func:`path_for_display`."""
    if isinstance(data, str):
        return _text_for_display(data, run_dir)
    if isinstance(data, dict):
        return {_text_for_display(str(k), run_dir): without_absolute_paths(v, run_dir) for k, v in data.items()}
    if isinstance(data, list):
        return [without_absolute_paths(v, run_dir) for v in data]
    return data
