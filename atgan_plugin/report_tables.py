"""The tables of report.html: any JSON value as tables, so that a new field shows up without a code change.

A dict of scalars is a key/value table, a list of dicts a table with one row per dict (nested dicts become
dotted columns, nested lists of dicts their own tables), and every value is written by :func:`format_value`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Table", "format_value", "is_row_list", "key_value_table", "tables_from"]

_COLLAPSE_ROWS = 12  # longer tables start folded


def format_value(value: Any) -> str:
    """How a JSON value is written in the page: floats to 4 significant digits, ``None`` as "–"."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value) if value else "none"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_scalar(v) for v in value)


def is_row_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


@dataclass
class Table:
    """A rendered table: ``rows`` of formatted cells under ``columns``; ``key_value`` for two-column ones."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    key_value: bool = False
    raw: list[list[Any]] = field(default_factory=list, repr=False)  # the values, for the cells' tooltips

    @property
    def collapsed(self) -> bool:
        return len(self.rows) > _COLLAPSE_ROWS


def _flatten(data: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Scalars (and scalar lists) of ``data`` under dotted keys, and the nested row lists left over."""
    flat: dict[str, Any] = {}
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if _is_scalar(value) or _is_scalar_list(value):
            flat[name] = value
        elif isinstance(value, dict):
            inner, more = _flatten(value, f"{name}.")
            flat.update(inner)
            nested += more
        elif is_row_list(value):
            nested.append((name, value))
        else:  # a list of lists or of mixed values: shown as JSON text
            flat[name] = json.dumps(value)
    return flat, nested


def _rows_table(title: str, rows: list[dict[str, Any]]) -> tuple[Table, list[tuple[str, Any]]]:
    flats, nested = [], []
    for i, row in enumerate(rows):
        flat, more = _flatten(row)
        flats.append(flat)
        nested += [(f"{title}[{i}].{name}", value) for name, value in more]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    columns = [k for k in keys if "." not in k] + [k for k in keys if "." in k]  # a row's own fields first
    raw = [[flat.get(c) for c in columns] for flat in flats]
    return Table(title, columns, [[format_value(v) for v in r] for r in raw], raw=raw), nested


def tables_from(title: str, data: Any) -> list[Table]:
    """Every table in a JSON value: a dict's scalars as one key/value table, each nested dict of
    scalars as its own, each list of dicts as a table (its nested lists as tables after it)."""
    if is_row_list(data):
        table, nested = _rows_table(title, data)
        return [table] + [t for name, value in nested for t in tables_from(name, value)]
    if not isinstance(data, dict):
        return [Table(title, ["value"], [[format_value(data)]], raw=[[data]])]
    tables: list[Table] = []
    scalars = {k: v for k, v in data.items() if _is_scalar(v) or _is_scalar_list(v)}
    if scalars:
        raw = [[k, v] for k, v in scalars.items()]
        tables.append(Table(title, ["", ""], [[k, format_value(v)] for k, v in raw], key_value=True, raw=raw))
    for key, value in data.items():
        name = f"{title} › {key}"
        if isinstance(value, dict) and value:
            tables += tables_from(name, value)
        elif is_row_list(value):
            tables += tables_from(name, value)
        elif isinstance(value, list) and value and not _is_scalar_list(value):
            tables.append(Table(name, ["value"], [[json.dumps(value)]], raw=[[value]]))
    return tables


def key_value_table(title: str, rows: list[list[Any]]) -> Table:
    """A two-column table of ``[key, value]`` rows."""
    return Table(title, ["", ""], [[k, format_value(v)] for k, v in rows], key_value=True, raw=rows)
