"""atgan_plugin.runs: numbered run folders and atomic JSON records."""

from __future__ import annotations

import json
from pathlib import Path

from atgan_plugin.runs import is_complete, mark_complete, new_run_dir, write_json


def test_run_folders_are_numbered_and_never_reused(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path / "runs", "demo")
    second = new_run_dir(tmp_path / "runs", "demo")
    assert (first.name, second.name) == ("00001-demo", "00002-demo")
    assert first.is_dir() and second.is_dir()


def test_numbering_continues_after_the_highest(tmp_path: Path) -> None:
    for name in ("00007-old", "notes", "123-short"):
        (tmp_path / name).mkdir()
    assert new_run_dir(tmp_path, "next").name == "00008-next"


def test_write_json_is_sorted_indented_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    write_json(path, {"b": 1, "a": {"path": Path("/x/y")}})
    text = path.read_text()
    assert text.endswith("}\n")
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": {"path": "/x/y"}, "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["options.json"]


def test_a_run_is_complete_only_once_marked(tmp_path: Path) -> None:
    run = new_run_dir(tmp_path, "attack")
    write_json(run / "options.json", {"options": {}})
    assert not is_complete(run)  # killed before the end: no marker
    (run / "complete.json").write_text("{not json")
    assert not is_complete(run)
    mark_complete(run, step=3)
    assert is_complete(run)
    assert json.loads((run / "complete.json").read_text()) == {"complete": True, "step": 3}
