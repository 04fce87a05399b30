"""``report.html`` (``write_report``, ``atgan report``) and the per-class grid it shows.

The page must parse, hold every value of the run's result tables and embed every image it shows,
with nothing fetched from elsewhere. New fields in a result file appear without code changes.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.cli import main
from atgan_plugin.paper.evaluation import save_class_grid
from atgan_plugin.report import RunFolderError, format_value, write_report

_VOID = {"meta", "link", "img", "br", "hr", "input", "source", "wbr"}


class Page(HTMLParser):
    """Cells, images, links and scripts of a page; nesting errors raise."""

    def __init__(self, html: str):
        super().__init__()
        self.stack: list[str] = []
        self.cells: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()
        assert self.stack == [], f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        for name in ("src", "href"):
            if (values.get(name) or "").startswith(("http:", "https:", "//")):
                self.external.append(values[name] or "")
        if tag not in _VOID:
            self.stack.append(tag)
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_values(data: Any) -> Iterator[str]:
    """Every value a result file's tables hold, formatted as the page writes it."""
    if isinstance(data, dict):
        for value in data.values():
            yield from table_values(value)
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for value in data:
            yield from table_values(value)
    else:
        yield format_value(data)


def decoded(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    return base64.b64decode(uri[len(prefix) :])


def check_self_contained(page: Page) -> None:
    assert page.external == [] and not page.tags & {"script", "link", "iframe"}
    for uri in page.images:
        Image.open(io.BytesIO(decoded(uri))).verify()


def test_demo_report_holds_every_value_image_and_curve(demo_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = Page(path.read_text())
    check_self_contained(page)
    report = json.loads((run_dir / "report.json").read_text())
    missing = [value for value in table_values(report) if value not in page.cells]
    assert missing == []
    options = json.loads((run_dir / "options.json").read_text())
    assert [v for v in table_values(options) if v not in page.cells] == []
    embedded = [decoded(uri) for uri in page.images]
    for png in sorted(run_dir.glob("*.png")):
        assert png.read_bytes() in embedded, png.name
    assert {p.name for p in run_dir.glob("*.png")} >= {"grid.png", "classes.png"}
    # Besides the grids, one image: the fit curves (the 20-step fit has two history records).
    assert [r["step"] for r in report["fits"][0]["history"]] == [10, 20]
    assert len(embedded) == len(list(run_dir.glob("*.png"))) + 1


def test_new_fields_and_histories_appear_without_code_changes(tmp_path: Path) -> None:
    results = {
        "seconds": 12.5,
        "environment": {"python": "3.11", "machine": "a test <machine> & co"},
        "white_box": [
            {"model": "A-nor", "fgsm": 0.25, "atgan": {"success": 0.99, "ratio": 0.9871}},
            {"model": "B-adv", "pgd": 0.125, "new_metric": 7},
        ],
        "a_new_section": {"depth": {"deeper": [1, 2, 3], "label": "x"}, "flag": True, "empty": None},
        "fits": [
            {
                "target": 3,
                "history": [
                    {"step": 10, "loss": 2.0, "success": 0.1},
                    {"step": 20, "loss": 1.0, "success": 0.6, "realism": 0.8},
                ],
            }
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    page = Page(write_report(tmp_path).read_text())
    check_self_contained(page)
    assert [v for v in table_values(results) if v not in page.cells] == []
    assert "a test <machine> & co" in page.cells  # escaped in the HTML, intact in the text
    assert len(page.images) == 1  # the fit curves


def test_atgan_report_command_and_its_errors(demo_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("*.safetensors", "report.html"))
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0 and result.output.strip() == f"report: {run_dir / 'report.html'}"
    for folder, message in [(tmp_path / "nowhere", "no run folder"), (tmp_path, "is not a run folder")]:
        result = CliRunner().invoke(main, ["report", str(folder)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    (run_dir / "report.json").write_text("{not json")
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 1 and "report.json is not readable JSON" in result.output
    with pytest.raises(RunFolderError):
        write_report(tmp_path / "nowhere")


def _png(color: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), color=color).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_RUN_FOLDERS: list[tuple[str, dict[str, str], str]] = [
    ("options.json holds a list", {"options.json": "[1, 2]"}, r"options\.json must hold a JSON object .*, not a list"),
    ("options.json holds a string", {"options.json": '"x"'}, r"not a str"),
    ("JSON 100,000 deep", {"results.json": "[" * 100_000 + "]" * 100_000}, r"results\.json is not readable JSON \(RecursionError"),
    ("JSON 900 deep", {"results.json": '{"a": ' + "[" * 900 + "]" * 900 + "}"}, r"nests lists and objects more than 32 deep"),
    ("environment a list", {"options.json": '{"environment": [1]}', "report.json": "{}"}, ""),
]  # fmt: skip


@pytest.mark.parametrize("files, match", [r[1:] for r in BAD_RUN_FOLDERS], ids=[r[0] for r in BAD_RUN_FOLDERS])
def test_bad_run_folder_files_are_named(tmp_path: Path, files: dict[str, str], match: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    if match:
        assert result.exit_code == 1 and re.search(match, result.output), result.output
        with pytest.raises(RunFolderError, match=match):
            write_report(tmp_path)
    else:
        assert result.exit_code == 0, result.output


def test_infinite_values_in_a_history_are_shown_not_plotted(tmp_path: Path) -> None:
    history = [{"step": 10, "loss": 1.0}, {"step": 20, "loss": float("inf")}, {"step": 30, "loss": -float("inf")}]
    history += [{"step": 40, "loss": float("nan")}, {"step": 50, "loss": 0.5}]
    (tmp_path / "results.json").write_text(json.dumps({"fits": [{"target": 1, "history": history}]}))
    page = Page(write_report(tmp_path).read_text())
    check_self_contained(page)
    assert {"inf", "-inf", "nan"} <= set(page.cells) and len(page.images) == 1  # the fit curve


def test_only_image_files_inside_the_run_folder_are_embedded(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"a": 1}')
    (run_dir / "grid.png").write_bytes(_png(10))
    (run_dir / "x.png").mkdir()  # a folder named like an image
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(200))
    (run_dir / "linked.png").symlink_to(secret)  # a link out of the run folder
    (run_dir / "inside.png").symlink_to(run_dir / "grid.png")  # a link inside it: fine
    with pytest.warns(UserWarning) as caught:
        page = Page(write_report(run_dir).read_text())
    messages = sorted(str(w.message) for w in caught)
    assert any("'linked.png' is a link leading out of" in m for m in messages)
    assert any("x.png is not a file" in m for m in messages)
    embedded = [decoded(uri) for uri in page.images]
    assert secret.read_bytes() not in embedded and embedded.count(_png(10)) == 2
    (run_dir / "results.json").unlink()
    (run_dir / "results.json").symlink_to(secret)
    with pytest.raises(RunFolderError, match=r"results\.json 'results\.json' is a link leading out of"):
        write_report(run_dir)


@pytest.mark.parametrize("target, rows", [(None, 10), (4, 9)])
def test_class_grid_has_one_row_per_source_class(
    tiny_generator: nn.Module, tiny_target: nn.Module, tmp_path: Path, target: int | None, rows: int
) -> None:
    attack = ATGANAttack(tiny_target, generator=tiny_generator, steps=2, batch_size=8, progress=False)
    path = save_class_grid(attack, tiny_target, tmp_path / "classes.png", target=target, columns=3, scale=2)
    tile = 28 + 2  # make_grid's padding
    with Image.open(path) as image:
        assert image.size == (2 * ((3 * 3 + 2) * tile + 2), 2 * (rows * tile + 2))
