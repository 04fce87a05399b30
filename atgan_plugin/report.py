"""``report.html``: one self-contained page for a run folder (``atgan report RUN_DIR`` rebuilds it).

What the page shows is read from the run folder's files, never from the command that made it:

- first, for an ``atgan evaluate`` / ``atgan demo`` run, the summary (:mod:`atgan_plugin.report_summary`):
  the sentences the demo printed, four numbers beside G_orig's, realistic success per class and the
  examples the oracle rejected;
- the options, checkpoints and machine (``options.json``);
- every table in the result files (``report.json``, ``results.json``, ``summary.json``,
  ``human-eval/table10.json``), rendered generically (:mod:`atgan_plugin.report_tables`) so that a new
  field shows up without a code change;
- the fit curves: every ``history`` list (one record per 10 fit steps) plotted against ``step``;
- every ``*.png`` in the folder (the grids and figures), embedded.

Paths are shown relative to the run folder or as the shipped checkpoint they name, never as the absolute
path of the machine that ran it (:mod:`atgan_plugin.report_paths`); the files keep them as written.

Images are embedded as base64 ``data:`` URIs and the style is inline: the page opens offline,
from a copy, with no network. Plots are drawn with matplotlib's object API (no pyplot state),
the page with a Jinja2 template shipped as package data.

Only the run folder is read: a JSON file that a link leads out of it is a :class:`RunFolderError`,
a ``*.png`` that is a link out of it (or not a file) is left out with a warning. A file that is not
what the page needs (``options.json`` holding a list, JSON nested deeper than :data:`MAX_DEPTH`) is a
named error; a non-finite number in a fit history is shown in the tables and left out of its plot.
"""

from __future__ import annotations

import base64
import io
import json
import math
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atgan_plugin.checkpoints import atomic_write
from atgan_plugin.report_paths import without_absolute_paths
from atgan_plugin.report_summary import build_summary
from atgan_plugin.report_tables import Table, format_value, is_row_list, key_value_table, tables_from
from atgan_plugin.runs import RunFolderError, path_inside

__all__ = ["MAX_DEPTH", "RESULT_FILES", "RunFolderError", "Table", "format_value", "tables_from", "write_report"]

RESULT_FILES = ("report.json", "results.json", "summary.json", "human-eval/table10.json")
_CAPTIONS = {
    "grid.png": "G_orig (top), AT-GAN (middle) and their difference (bottom; grey is no change), one column per class.",
    "classes.png": "One row per class: G_orig | the same latents through AT-GAN | the difference (grey is no change).",
    "targets.png": "Targeted (appendix Figure 8): one row per latent, one column per target; the diagonal is G_orig.",
}
_TIMING_WORDS = ("seconds", "per_second", "time")
MAX_DEPTH = 32  # our files nest a few levels; the page's tables recurse once per level


def _histories(data: Any, path: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every ``history`` list of records with a ``step`` in ``data``, with where it was found."""
    found: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key == "history" and is_row_list(value) and all("step" in r for r in value):
                found.append((where, value))
            else:
                found += _histories(value, where)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _histories(value, f"{path}[{i}]")
    return found


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _display_width(png: bytes, at_least: int = 600) -> int | None:
    """A whole multiple of a PNG's width of at least ``at_least`` pixels, so that small grids are readable."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return None
    width = int.from_bytes(png[16:20], "big")
    return width * max(1, math.ceil(at_least / width)) if width else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numeric(history: list[dict[str, Any]], key: str) -> bool:
    """Whether every record that has ``key`` holds a number there (booleans are not plotted)."""
    return all(isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in history if key in r)


def plot_history(history: list[dict[str, Any]], title: str) -> bytes:
    """Each numeric field of the fit records against ``step``, one panel each, as PNG bytes."""
    from matplotlib.figure import Figure

    keys = [key for key in dict.fromkeys(k for r in history for k in r) if key != "step" and _numeric(history, key)]
    columns = min(3, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / columns))
    figure = Figure(figsize=(4 * columns, 2.6 * rows), layout="constrained")
    figure.suptitle(title)
    for i, key in enumerate(keys):
        axes = figure.add_subplot(rows, columns, i + 1)
        records = [(r["step"], r[key]) for r in history if key in r]
        # A diverged fit records inf or NaN: the tables show them, the plot leaves them out and says so.
        points = [(x, y) for x, y in records if _finite(x) and _finite(y)]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 30 else None)
        left_out = len(records) - len(points)
        axes.set_title(key + (f" ({left_out} non-finite left out)" if left_out else ""))
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _depth(data: Any) -> int:
    """How deep lists and objects nest in ``data`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
        if isinstance(value, (dict, list)):
            deepest = max(deepest, level)
    return deepest


def _read_json(run_dir: Path, name: str) -> Any:
    """``run_dir/name`` as JSON: a :class:`RunFolderError` when it leads out of the folder, is no readable
    JSON or nests deeper than :data:`MAX_DEPTH`."""
    path = path_inside(run_dir, name, name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise RunFolderError(f"{path} is not readable JSON ({type(error).__name__}: {error})") from error
    if _depth(data) > MAX_DEPTH:
        raise RunFolderError(f"{path} nests lists and objects more than {MAX_DEPTH} deep; no result file of ours does")
    return data


def _pngs(run_dir: Path) -> dict[str, bytes]:
    """Every ``*.png`` that is a file inside ``run_dir``; the others are named in a warning and left out."""
    pngs: dict[str, bytes] = {}
    for path in sorted(run_dir.glob("*.png")):
        try:
            path_inside(run_dir, path.name, "image")
        except RunFolderError as error:
            warnings.warn(f"{error}: not shown in the report", stacklevel=3)
            continue
        if not path.is_file():
            warnings.warn(f"{path} is not a file: not shown in the report", stacklevel=3)
            continue
        pngs[path.name] = path.read_bytes()
    return pngs


def _timings(name: str, data: Any) -> list[list[Any]]:
    if not isinstance(data, dict):
        return []
    timings = {
        k: v for k, v in data.items() if isinstance(v, (int, float)) and any(word in k for word in _TIMING_WORDS)
    }
    return [[f"{name} › {k}", v] for k, v in timings.items()]


def _without_environment(data: Any) -> Any:
    """A result file's content without its ``environment`` (shown with the machine instead)."""
    return {k: v for k, v in data.items() if k != "environment"} if isinstance(data, dict) else data


def _machine_rows(options: dict[str, Any], results: dict[str, Any]) -> list[list[Any]]:
    """Every file's ``environment`` entries and every timing, as ``(file › key, value)`` rows."""
    environments = [("options.json", options.get("environment"))]
    environments += [(name, data.get("environment")) for name, data in results.items() if isinstance(data, dict)]
    rows = [[f"{name} › {k}", v] for name, env in environments if isinstance(env, dict) for k, v in env.items()]
    return rows + [row for name, data in results.items() for row in _timings(name, data)]


def _command(options: dict[str, Any]) -> str:
    environment = options.get("environment")
    command = environment.get("command", "") if isinstance(environment, dict) else ""
    return command if isinstance(command, str) else format_value(command)


def write_report(run_dir: str | Path) -> Path:
    """Writes ``RUN_DIR/report.html`` from the run folder's files and returns its path."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"no run folder {run_dir}")
    options = _read_json(run_dir, "options.json") if (run_dir / "options.json").exists() else {}
    if not isinstance(options, dict):
        raise RunFolderError(
            f"{run_dir / 'options.json'} must hold a JSON object (options, checkpoints, environment), "
            f"not a {type(options).__name__}"
        )
    results = {name: _read_json(run_dir, name) for name in RESULT_FILES if (run_dir / name).exists()}
    if not options and not results:
        raise RunFolderError(
            f"{run_dir} is not a run folder: it has no options.json nor any of {', '.join(RESULT_FILES)}"
        )

    pngs = _pngs(run_dir)
    summary = build_summary(results.get("report.json"), options, pngs)  # from the files as written
    # From here on, what the page shows: no absolute path of the machine that ran it.
    options = without_absolute_paths(options, run_dir)
    results = {name: without_absolute_paths(data, run_dir) for name, data in results.items()}
    machine = _machine_rows(options, results)
    sections = [
        {"title": name, "tables": tables_from(name, _without_environment(data))} for name, data in results.items()
    ]
    curves = [
        {"title": f"{name}: {where}", "uri": _png_data_uri(plot_history(history, f"{name}: {where}"))}
        for name, data in results.items()
        for where, history in _histories(data)
        if len(history) >= 2
    ]
    shown_in_summary = summary.rejected_file if summary is not None else None
    images = [
        {"name": name, "caption": _CAPTIONS.get(name, ""), "uri": _png_data_uri(png), "width": _display_width(png)}
        for name, png in pngs.items()
        if name != shown_in_summary
    ]
    rejected = None
    if summary is not None and summary.rejected_file is not None:
        png = pngs[summary.rejected_file]
        rejected = {"name": summary.rejected_file, "uri": _png_data_uri(png), "width": _display_width(png)}
    settings = [
        key_value_table(title, [[k, v] for k, v in value.items()])
        for title, value in (("options", options.get("options")), ("checkpoints", options.get("checkpoints")))
        if isinstance(value, dict) and value
    ]

    env = Environment(loader=PackageLoader("atgan_plugin", "templates"), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        run=run_dir.name,
        command=_command(options),
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        summary=summary,
        rejected=rejected,
        settings=settings,
        sections=sections,
        curves=curves,
        images=images,
        machine=key_value_table("machine and timings", machine),
        format_value=format_value,
    )
    path = run_dir / "report.html"
    with atomic_write(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path
