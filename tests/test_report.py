"""``report.html`` (``write_report``, ``atgan report``) and the per-class grid it shows.

The page must parse, hold every value of the run's result tables and embed every image it shows,
with nothing fetched from elsewhere. New fields in a result file appear without code changes. An
evaluation's page opens with its summary, and no absolute path of the machine that ran it shows.
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

from atgan_plugin import ATGANAttack, pretrained
from atgan_plugin.cli import main
from atgan_plugin.metrics.records import SettingMetrics
from atgan_plugin.paper.evaluation import save_class_grid
from atgan_plugin.report import RunFolderError, format_value, write_report
from atgan_plugin.report_paths import path_for_display, without_absolute_paths
from atgan_plugin.report_summary import summary_sentences

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
    # The values as the page shows them: paths relative to the run folder or named as shipped checkpoints.
    missing = [value for value in table_values(without_absolute_paths(report, run_dir)) if value not in page.cells]
    assert missing == []
    options = json.loads((run_dir / "options.json").read_text())
    assert [v for v in table_values(without_absolute_paths(options, run_dir)) if v not in page.cells] == []
    embedded = [decoded(uri) for uri in page.images]
    for png in sorted(run_dir.glob("*.png")):
        assert png.read_bytes() in embedded, png.name
    assert {p.name for p in run_dir.glob("*.png")} >= {"grid.png", "classes.png"}
    # Besides the grids, one image: the fit curves (a record every 10 steps of the 20-step fit, which the preset
    # lengthens to 40 where the tiny fit lags halfway).
    history = [r["step"] for r in report["fits"][0]["history"]]
    assert history in ([10, 20], [10, 20, 30, 40])
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


# ------------------------------------------------------------------------------------------------
# The summary an evaluation's page opens with, and paths as the page shows them.


def summary_of(html: str) -> str:
    """The summary section's HTML (an AssertionError when there is none)."""
    match = re.search(r'<section id="summary">.*?</section>', html, flags=re.S)
    assert match is not None, "no summary section"
    return match.group(0)


class Text(HTMLParser):
    """The text of an HTML fragment, entities decoded and white space collapsed (``.text``)."""

    def __init__(self, html: str):
        super().__init__()
        self.parts: list[str] = []
        self.feed(html)
        self.close()
        self.text = " ".join(" ".join(self.parts).split())

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(html: str) -> str:
    return Text(html).text


def copy_run(demo_run: Path, tmp_path: Path, **report_changes: Any) -> Path:
    """A copy of the demo's run folder (no checkpoints) whose report.json has ``report_changes`` applied
    (a value None deletes the key)."""
    run_dir = tmp_path / "runs" / demo_run.name
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    report = json.loads((run_dir / "report.json").read_text())
    for key, value in report_changes.items():
        if value is None:
            report.pop(key, None)
        else:
            report[key] = value
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir


def test_the_page_opens_with_the_summary_the_demo_printed(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path)
    html = write_report(run_dir).read_text()
    check_self_contained(Page(html))
    # First after the title: before the navigation, the grids and every other section.
    assert html.index('<section id="summary">') < html.index("<nav>") < html.index('id="images"')
    first_heading = re.search(r"<h2.*?</h2>", html, flags=re.S)
    assert first_heading is not None and text_of(first_heading.group(0)) == "Summary (untargeted)"
    summary = summary_of(html)
    report = json.loads((run_dir / "report.json").read_text())
    m = SettingMetrics.from_json(report["untargeted"])
    assert m.fd_ratio is not None and m.fd_orig is not None and m.fd_attack is not None
    assert m.reference_error is not None
    paragraphs = [text_of(p) for p in re.findall(r'<p class="answer">(.*?)</p>', summary, flags=re.S)]
    assert paragraphs == summary_sentences(m, "Model A")  # the CLI prints these very sentences
    assert paragraphs[0].startswith(f"Model A misclassifies {m.success_rate:.1%} of AT-GAN's images")
    numbers = [text_of(n) for n in re.findall(r'<div class="number">(.*?)</div></div>', summary, flags=re.S)]
    assert numbers == [
        f"{m.success_rate:.1%} success G_orig: {m.reference_error:.1%} (the model's error on its images)",
        f"{m.realistic_success_rate:.1%} realistic success fooled, and the oracle still sees the source",
        f"{m.agreement_ratio:.3f} oracle agreement ratio AT-GAN {m.oracle_agreement_attack:.1%} · "
        f"G_orig {m.oracle_agreement_orig:.1%}",
        f"{m.fd_ratio:.2f}× FD × AT-GAN {m.fd_attack:.1f} · G_orig {m.fd_orig:.1f}",
    ]
    # atgan report rebuilds the summary the demo's own report.html opened with.
    assert summary == summary_of((demo_run / "report.html").read_text())


def test_per_class_table_matches_the_counts(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path)
    page = Page(summary_of(write_report(run_dir).read_text()))
    per_class = json.loads((run_dir / "report.json").read_text())["untargeted"]["per_class"]
    assert sum(row["n"] for row in per_class) == 16 and per_class
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    expected = ["class", "name", "n", "success", "realistic success"]
    for row in per_class:
        n, fooled, realistic = row["n"], row["fooled"], row["realistic"]
        cells = [str(row["source"]), names[row["source"]], str(n), f"{fooled / n:.1%} ({fooled})"]
        expected += [*cells, f"{realistic / n:.1%} ({realistic})"]
    assert page.cells == expected


REJECTED = {"file": "rejected.png", "target": None, "count": 3, "sources": [1, 3], "oracle_classes": [2, 4]}


def test_rejected_examples_are_shown_in_the_summary(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path, rejected_examples=REJECTED)
    (run_dir / "rejected.png").write_bytes(_png(77))
    html = write_report(run_dir).read_text()
    summary = summary_of(html)
    images = Page(summary).images
    assert len(images) == 1 and decoded(images[0]) == _png(77)
    assert [decoded(uri) for uri in Page(html).images].count(_png(77)) == 1  # in the summary, not again in the grids
    text = text_of(summary)
    assert "The oracle rejected 3 of the" in text
    assert "source class, left to right: 1 Trouser (oracle: 2 Pullover); 3 Dress (oracle: 4 Coat)" in text


def test_a_run_without_rejected_examples_says_so(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path, rejected_examples={**REJECTED, "file": None, "count": 0, "sources": []})
    (run_dir / "rejected.png").unlink(missing_ok=True)
    summary = summary_of(write_report(run_dir).read_text())
    assert "The oracle rejected none of the" in text_of(summary) and Page(summary).images == []


def test_an_older_report_json_still_renders(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path, rejected_examples=None, schema_version=None)
    report = json.loads((run_dir / "report.json").read_text())
    for key in ("per_class", "reference_error"):
        del report["untargeted"][key]
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "rejected.png").unlink(missing_ok=True)
    html = write_report(run_dir).read_text()
    check_self_contained(Page(html))
    text = text_of(summary_of(html))
    assert "success G_orig: not measured" in text and "per source class: not measured" in text
    m = SettingMetrics.from_json(report["untargeted"])
    assert summary_sentences(m, "Model A")[0] in text
    rejected = round(m.n * (m.success_rate - m.realistic_success_rate))
    assert f"The oracle rejected {rejected if rejected else 'none'} of the" in text


def test_a_targeted_only_report_leads_with_the_mean_over_targets(demo_run: Path, tmp_path: Path) -> None:
    report = json.loads((demo_run / "report.json").read_text())
    targeted = [{**report["untargeted"], "target": t} for t in (2, 5)]
    targeted[1]["success_rate"] = 0.0
    run_dir = copy_run(demo_run, tmp_path, untargeted=None, targeted=targeted)
    text = text_of(summary_of(write_report(run_dir).read_text()))
    mean = report["untargeted"]["success_rate"] / 2
    assert "(mean over 2 targets)" in text and f"gives the target class for {mean:.1%} of AT-GAN's images" in text


def test_a_report_json_without_a_measured_setting_has_no_summary(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"untargeted": None, "targeted": []}))
    assert 'id="summary"' not in write_report(tmp_path).read_text()
    (tmp_path / "report.json").write_text(json.dumps({"untargeted": {"n": 4, "success_rate": "high"}}))
    with pytest.warns(UserWarning, match=r"report.json's untargeted setting lacks numbers for success_rate"):
        html = write_report(tmp_path).read_text()
    assert 'id="summary"' not in html and "high" in Page(html).cells  # the tables still show what is there
    numbers = dict.fromkeys(("n", "success_rate", "realistic_success_rate", "agreement_ratio", "added_edges"), 1)
    numbers |= {"oracle_agreement_orig": 1, "oracle_agreement_attack": 1, "per_class": 3}
    (tmp_path / "report.json").write_text(json.dumps({"untargeted": numbers}))
    with pytest.warns(UserWarning, match=r"per_class must be a list of rows, not a int: the report has no summary"):
        assert 'id="summary"' not in write_report(tmp_path).read_text()


def test_no_absolute_path_of_the_machine_shows(demo_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(demo_run, tmp_path)
    options = json.loads((run_dir / "options.json").read_text())
    options["checkpoints"]["fit"] = str(run_dir / "g_attack.safetensors")  # as atgan attack --fit records it
    options["checkpoints"]["transfer_guard"] = f"{pretrained.ROOT}/fashion-mnist/robust_guard.safetensors, /x/y.pt"
    options["environment"]["command"] += f" --runs-dir {run_dir.parent} --data-dir /home/someone/data"
    (run_dir / "options.json").write_text(json.dumps(options))
    html = write_report(run_dir).read_text()
    report = (run_dir / "report.json").read_text()
    assert str(pretrained.ROOT) in report and str(pretrained.ROOT) in (run_dir / "options.json").read_text()
    for absolute in (run_dir, run_dir.resolve(), demo_run, demo_run.parent, pretrained.ROOT, "/home/someone"):
        assert str(absolute) not in html, absolute
    cells = Page(html).cells
    for shown in ("shipped: model_a", "shipped: generator", "g_attack.safetensors", "shipped: robust_guard, …/y.pt"):
        assert shown in cells, shown
    assert "--runs-dir .. --data-dir …/data" in html


PATHS: list[tuple[str, str]] = [
    ("{run}/g_attack.safetensors", "g_attack.safetensors"),
    ("{run}", "."),
    ("{run}/../00002-fit/g_attack.safetensors", "../00002-fit/g_attack.safetensors"),
    ("{run}/..", ".."),
    ("{root}/fashion-mnist/model_a.safetensors", "shipped: model_a"),
    ("{root}/fashion-mnist/targets/A-nor.safetensors", "shipped: targets/A-nor"),
    ("/elsewhere/site-packages/atgan_plugin/pretrained/fashion-mnist/oracle.safetensors", "shipped: oracle"),
    ("/elsewhere/site-packages/atgan_plugin/pretrained/mnist/oracle.safetensors", "shipped: mnist/oracle"),
    ("/home/someone/models/mine.safetensors", "…/mine.safetensors"),
    ("C:\\Users\\someone\\mine.safetensors", "…/mine.safetensors"),
    ("models/mine.safetensors", "models/mine.safetensors"),
    ("auto", "auto"),
]  # fmt: skip


@pytest.mark.parametrize("path, shown", PATHS, ids=[row[1] for row in PATHS])
def test_paths_as_the_page_shows_them(tmp_path: Path, path: str, shown: str) -> None:
    run_dir = tmp_path / "runs" / "00001-demo"
    absolute = path.format(run=run_dir, root=pretrained.ROOT)
    absolute = str(Path(absolute).resolve()) if absolute.startswith("/") and ".." in absolute else absolute
    assert path_for_display(absolute, run_dir) == shown
