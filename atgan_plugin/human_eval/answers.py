"""Raters' answers: one JSON-lines file per rater, each answer appended and flushed to disk at once.

``RUN_DIR/human-eval/answers/<rater>.jsonl``, one line per answer::

    {"item": "3f9c0a1b22de", "realistic": true, "class": 4, "time": "2025-01-01T12:00:00+00:00"}

(``class`` is the rater's answer to "Which class is it?", ``null`` when not asked). A line is
written with one ``write``, flushed and ``fsync``-ed before the page hears "saved", so a killed
server or a closed tab loses at most the answer in flight. Reading never counts a bad line
silently: each one is reported (file and line) and skipped; the first answer to an item counts.
A file that cannot be read at all stops only its own rater: the table reports and skips it. An
answers file that is a link, or a folder that leads out of the run folder, is never read nor
written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atgan_plugin import runs
from atgan_plugin.human_eval.items import ItemSet

__all__ = ["Answer", "AnswersFileError", "append_answer", "check_rater", "read_all_answers", "read_answers"]

_RATER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class AnswersFileError(ValueError):
    """An answers file cannot be read as answers at all (the message names the file and why)."""


@dataclass(frozen=True)
class Answer:
    rater: str
    item: str
    realistic: bool
    cls: int | None  # the class the rater named, when asked
    time: str


def check_rater(name: str) -> str:
    """A rater's name is the name of their file: letters, digits, ``_.-``, at most 64 characters."""
    if not _RATER.fullmatch(name):
        raise ValueError(
            f"rater name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names the answers file)"
        )
    return name


def answers_path(items: ItemSet, rater: str) -> Path:
    """The rater's file, ``answers/<rater>.jsonl``: an ``AnswersFileError`` when it or its folder leads out
    of the run folder or the file is a link."""
    name = f"{items.folder.name}/answers/{check_rater(rater)}.jsonl"
    try:
        path = runs.path_inside(items.folder.parent, name, f"{rater}'s answers file")
    except runs.RunFolderError as error:
        raise AnswersFileError(str(error)) from None
    if path.is_symlink():
        raise AnswersFileError(f"{path} is a link; an answers file must be a file of its own")
    return path


def parse_answer(record: Any, items: ItemSet, rater: str) -> Answer | str:
    """The answer in a decoded JSON ``record``, or a string saying what is wrong with it."""
    if not isinstance(record, dict):
        return "not a JSON object"
    item = record.get("item")
    if not isinstance(item, str) or item not in items.index:
        return f"unknown item {item!r}"[:200]
    realistic = record.get("realistic")
    if not isinstance(realistic, bool):
        return f"'realistic' must be true or false, got {realistic!r}"[:200]
    cls = record.get("class")
    if cls is not None and (isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < len(items.class_names)):
        return f"'class' must be null or a class index in [0, {len(items.class_names)}), got {cls!r}"[:200]
    time = record.get("time", "")
    return Answer(rater, item, realistic, cls, time if isinstance(time, str) else "")


def read_answers(items: ItemSet, rater: str, path: Path | None = None) -> tuple[list[Answer], list[str]]:
    """The rater's answers in the order given (first answer per item) and the problems met, one line each."""
    path = path if path is not None else answers_path(items, rater)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise AnswersFileError(f"{path} is a link or not a regular file; an answers file must be a file of its own")
    if not path.exists():
        return [], []
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AnswersFileError(f"{path} cannot be read ({error.strerror or error})") from error
    answers: list[Answer] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        last = number == len(lines)  # no newline after it: cut off while being written
        try:
            parsed = parse_answer(json.loads(raw.decode("utf-8")), items, rater)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            what = "not JSON" if isinstance(error, json.JSONDecodeError) else "not UTF-8 text"
            parsed = "an answer cut off while being written" if last else what
        except (ValueError, RecursionError) as error:  # e.g. an integer of 5,000 digits, arrays 2,000 deep
            parsed = f"not an answer ({type(error).__name__})"
        if isinstance(parsed, Answer) and parsed.item in seen:
            parsed = f"a second answer to item {parsed.item} (line {seen[parsed.item]} counts)"
        if isinstance(parsed, str):
            problems.append(f"{path.name} line {number}: {parsed} (skipped)")
            continue
        seen[parsed.item] = number
        answers.append(parsed)
    if not answers and any(p for p in problems if "cut off" not in p):
        raise AnswersFileError(f"{path} holds no answer: {problems[0]}")
    return answers, problems


def read_all_answers(items: ItemSet) -> tuple[dict[str, list[Answer]], list[str]]:
    """Every rater's answers (by rater, sorted by name) and every problem met; a file that cannot be read
    at all is one problem, reported and skipped (the table of the others stands)."""
    try:
        folder = runs.path_inside(items.folder.parent, f"{items.folder.name}/answers", "the answers folder")
    except runs.RunFolderError as error:
        return {}, [f"answers: {error} (skipped)"]
    by_rater: dict[str, list[Answer]] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        if not _RATER.fullmatch(path.stem):
            problems.append(f"{path.name}: not a rater's file (names are letters, digits, '_', '.', '-') (skipped)")
            continue
        try:
            answers, found = read_answers(items, path.stem, path)
        except AnswersFileError as error:
            problems.append(f"{path.name}: {error} (skipped)")
            continue
        problems += found
        if answers:
            by_rater[path.stem] = answers
    return by_rater, problems


def append_answer(items: ItemSet, rater: str, item: str, realistic: bool, cls: int | None) -> Answer:
    """Appends one answer to the rater's file and forces it to disk before returning it."""
    parsed = parse_answer({"item": item, "realistic": realistic, "class": cls}, items, rater)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    path = answers_path(items, rater)
    path.parent.mkdir(parents=True, exist_ok=True)
    time = datetime.now(timezone.utc).isoformat(timespec="seconds")
    line = json.dumps({"item": item, "realistic": realistic, "class": cls, "time": time}, sort_keys=True)
    # O_NOFOLLOW: a link put in place after the check above is refused, not followed.
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        raise AnswersFileError(f"cannot append to {path}: {error.strerror or error}") from None
    with os.fdopen(fd, "a+b") as f:
        # A line cut off by a crash stays on its own line: start a fresh one after it.
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write((line + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return Answer(rater, item, realistic, cls, time)
