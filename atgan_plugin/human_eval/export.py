"""Files a human evaluation writes beside its items: Table 10 (Markdown and JSON) and CSV exports.

CSV, for crowd platforms and spreadsheets: ``items.csv`` (blind: id, image file, class; what a
platform shows), ``key.csv`` (id and source: what the analysis needs and the raters must not see)
and ``answers.csv`` (every counted answer, joined with its item).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from atgan_plugin import runs
from atgan_plugin.checkpoints import atomic_write
from atgan_plugin.human_eval.answers import read_all_answers
from atgan_plugin.human_eval.items import ItemSet
from atgan_plugin.human_eval.table import render_markdown, table10

__all__ = ["write_csv", "write_table"]


def write_table(items: ItemSet) -> tuple[dict[str, Any], str]:
    """Reads every rater's answers, writes ``table10.json`` and ``table10.md``; returns both."""
    by_rater, problems = read_all_answers(items)
    table = table10(items, by_rater, problems)
    markdown = render_markdown(table)
    runs.write_json(items.folder / "table10.json", table)
    with atomic_write(items.folder / "table10.md") as tmp:
        tmp.write_text(markdown)
    return table, markdown


def _write_rows(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_csv(items: ItemSet) -> tuple[list[Path], list[str]]:
    """Writes ``items.csv``, ``key.csv`` and ``answers.csv``; returns their paths and the skipped lines."""
    by_rater, problems = read_all_answers(items)
    info = items.index
    ordered = sorted(items.items, key=lambda item: item.id)
    names = items.class_names
    paths = [items.folder / name for name in ("items.csv", "key.csv", "answers.csv")]
    _write_rows(
        paths[0],
        ["item", "image", "class", "class_name", "question"],
        [[it.id, it.image, it.cls, names[it.cls], f"Is this a realistic {names[it.cls]}?"] for it in ordered],
    )
    _write_rows(
        paths[1], ["item", "source", "pair"], [[it.id, it.source, "" if it.pair is None else it.pair] for it in ordered]
    )
    rows = [
        [
            a.rater,
            a.item,
            info[a.item].cls,
            names[info[a.item].cls],
            info[a.item].source,
            int(a.realistic),
            "" if a.cls is None else a.cls,
            a.time,
        ]
        for rater in sorted(by_rater)
        for a in by_rater[rater]
    ]
    _write_rows(
        paths[2], ["rater", "item", "class", "class_name", "source", "realistic", "class_answered", "time"], rows
    )
    return paths, problems
