"""``atgan human-eval``: the item set, the answer files, Table 10, the server, and a real browser.

The run folder is a tiny ``atgan demo`` run (conftest ``demo_run``), copied per test. The browser
test drives Debian's chromium with Playwright: two raters answer with the keyboard, the server is
killed half-way and restarted, both finish, and Table 10 must equal what they answered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from atgan_plugin.cli import main
from atgan_plugin.human_eval import (
    AnswersFileError,
    HumanEvalApp,
    append_answer,
    build_items,
    load_items,
    make_server,
    read_all_answers,
    table10,
)
from atgan_plugin.human_eval.answers import Answer, read_answers
from atgan_plugin.human_eval.items import ItemSet, order_for
from atgan_plugin.human_eval.table import agreement, wilson_interval

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def copy_run(demo_run: Path, copy: Path) -> Path:
    """A private copy of the demo run, so that each test makes its own item set (the 27 MB fit is linked)."""
    shutil.copytree(demo_run, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    for fit in demo_run.glob("*.safetensors"):
        (copy / fit.name).symlink_to(fit)
    return copy


@pytest.fixture
def run_dir(demo_run: Path, tmp_path: Path) -> Path:
    return copy_run(demo_run, tmp_path / demo_run.name)


@pytest.fixture
def items(run_dir: Path) -> ItemSet:
    return build_items(run_dir, per_class=2, real_control=1, seed=5)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["human-eval", *map(str, args)])


# ------------------------------------------------------------------------------------------------
# The item set.


def test_items_pair_the_same_latents_and_are_made_once(items: ItemSet, run_dir: Path) -> None:
    by_source = {s: [it for it in items.items if it.source == s] for s in ("orig", "attack", "real")}
    assert [len(v) for v in by_source.values()] == [20, 20, 10]
    pairs = {it.pair for it in by_source["orig"]}
    assert pairs == {it.pair for it in by_source["attack"]} and len(pairs) == 20
    for cls in range(10):
        assert sum(it.cls == cls for it in items.items) == 5
    assert all((items.folder / it.image).is_file() for it in items.items)
    stored = load_items(run_dir / "human-eval")
    assert stored is not None and sorted(stored.items, key=lambda it: it.id) == sorted(
        items.items, key=lambda it: it.id
    )
    assert stored.class_names[9] == "Ankle boot"


def test_items_are_deterministic_from_the_seed(items: ItemSet, demo_run: Path, tmp_path: Path) -> None:
    again = build_items(copy_run(demo_run, tmp_path / "again"), per_class=2, real_control=1, seed=5)
    assert [(it.id, it.cls, it.source) for it in again.items] == [(it.id, it.cls, it.source) for it in items.items]
    for a, b in zip(items.items, again.items, strict=True):
        assert (items.folder / a.image).read_bytes() == (again.folder / b.image).read_bytes()


def test_each_rater_has_an_own_fixed_order(items: ItemSet) -> None:
    alice = order_for(items, "alice")
    assert alice == order_for(items, "alice") and sorted(alice) == sorted(it.id for it in items.items)
    assert alice != order_for(items, "bob")


# ------------------------------------------------------------------------------------------------
# Answer files.


def test_answers_are_appended_and_bad_lines_reported_not_counted(items: ItemSet) -> None:
    first, second, third = (it.id for it in items.items[:3])
    append_answer(items, "alice", first, True, None)
    path = items.folder / "answers" / "alice.jsonl"
    with open(path, "a") as f:
        f.write("this is not json\n")
        f.write(json.dumps({"item": "nope", "realistic": True}) + "\n")
        f.write(json.dumps({"item": second, "realistic": "yes"}) + "\n")
        f.write(json.dumps({"item": first, "realistic": False}) + "\n")  # a second answer: the first counts
        f.write('{"item": "' + second + '", "realis')  # cut off by a crash
    append_answer(items, "alice", second, False, 3)  # starts on a fresh line after the cut-off one
    answers, problems = read_answers(items, "alice")
    assert [(a.item, a.realistic, a.cls) for a in answers] == [(first, True, None), (second, False, 3)]
    assert [p.split(": ", 1)[1] for p in problems] == [
        "not JSON (skipped)",
        "unknown item 'nope' (skipped)",
        "'realistic' must be true or false, got 'yes' (skipped)",
        f"a second answer to item {first} (line 1 counts) (skipped)",
        "not JSON (skipped)",  # the cut-off line is no longer the last one
    ]
    with pytest.raises(ValueError, match="unknown item"):
        append_answer(items, "alice", "nope", True, None)
    with pytest.raises(ValueError, match="rater name"):
        append_answer(items, "../evil", third, True, None)


@pytest.mark.parametrize(
    "content, message",
    [(b"\xff\xfe\x00binary\n", "not UTF-8 text"), (b"garbage\nmore garbage\n", "holds no answer")],
    ids=["binary", "no answer at all"],
)
def test_a_malformed_answers_file_stops_only_its_own_rater(items: ItemSet, content: bytes, message: str) -> None:
    append_answer(items, "alice", items.items[0].id, True, None)
    (items.folder / "answers" / "carol.jsonl").write_bytes(content)
    by_rater, problems = read_all_answers(items)
    assert list(by_rater) == ["alice"] and len(problems) == 1
    assert problems[0].startswith("carol.jsonl: ") and message in problems[0] and problems[0].endswith("(skipped)")
    result = invoke(items.folder.parent, "--table")
    assert result.exit_code == 0 and "raters (answers): alice (1)" in result.output and message in result.output
    with pytest.raises(AnswersFileError, match=message):  # carol herself hears what is wrong with her file
        HumanEvalApp(items).state("carol")


def test_an_answer_cut_off_in_its_first_line_is_not_an_error(items: ItemSet) -> None:
    (items.folder / "answers").mkdir()
    (items.folder / "answers" / "dave.jsonl").write_text('{"item": "')
    by_rater, problems = read_all_answers(items)
    assert by_rater == {} and problems == ["dave.jsonl line 1: an answer cut off while being written (skipped)"]


# ------------------------------------------------------------------------------------------------
# Table 10.


def test_wilson_interval_and_agreement_by_hand() -> None:
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0 and high == pytest.approx(0.27753, abs=1e-5)
    low, high = wilson_interval(5, 10)  # type: ignore[misc]
    assert (low, high) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert wilson_interval(0, 0) is None
    # Two raters, four items: [T, T, F, F] and [T, F, F, F].
    votes = {"a": [True, True, False, False], "b": [True, False, False, False]}
    by_rater = {r: [Answer(r, f"i{k}", v, None, "") for k, v in enumerate(vs)] for r, vs in votes.items()}
    result = agreement(by_rater)
    assert result is not None and result["items"] == 4 and result["percent_agreement"] == pytest.approx(75.0)
    assert result["cohen_kappa"] == pytest.approx(0.5)  # p_o 0.75, p_e 0.5
    assert result["fleiss_kappa"] == pytest.approx((0.75 - 34 / 64) / (1 - 34 / 64))
    assert agreement({"a": by_rater["a"]}) is None


def test_table_counts_every_answer_by_class_and_source(items: ItemSet) -> None:
    info = items.index
    for rater, rule in (("alice", lambda it: it.source != "attack"), ("bob", lambda it: it.cls % 2 == 0)):
        for it in items.items:
            append_answer(items, rater, it.id, rule(it), it.cls)
    table = table10(items, *read_all_answers(items))
    assert table["raters"] == {"alice": 50, "bob": 50} and table["sources"] == ["orig", "attack", "real"]
    row = table["classes"][2]  # even: bob says realistic to all; alice to orig and real only
    assert (row["orig"]["realistic"], row["orig"]["n"]) == (4, 4)
    assert (row["attack"]["realistic"], row["attack"]["n"]) == (2, 4)
    assert row["ratio"] == pytest.approx(0.5) and row["attack"]["class_right"] == 4
    everything = table["all"]
    assert (everything["attack"]["realistic"], everything["attack"]["n"]) == (10, 40)
    assert table["agreement"]["items"] == len(info)


# ------------------------------------------------------------------------------------------------
# The command's bad inputs.


def test_unknown_run_folder_and_folder_without_options(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nowhere", "--table")
    assert result.exit_code == 1 and "no run folder" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke(tmp_path / "empty", "--table")
    assert result.exit_code == 1 and "no options.json" in result.output
    assert not (tmp_path / "empty" / "human-eval").exists()


def test_port_in_use_is_a_named_error(items: ItemSet) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(items.folder.parent, "--port", str(port))
    assert result.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in result.output


def test_other_settings_for_an_existing_item_set_are_refused(items: ItemSet) -> None:
    result = invoke(items.folder.parent, "--per-class", "3", "--table")
    assert result.exit_code == 2 and "--per-class 3 (stored: 2)" in result.output


def test_table_and_csv_report_skipped_lines(items: ItemSet) -> None:
    append_answer(items, "alice", items.items[0].id, True, None)
    with open(items.folder / "answers" / "alice.jsonl", "a") as f:
        f.write("{oops\n")
    result = invoke(items.folder.parent, "--table", "--csv")
    assert result.exit_code == 0, result.output
    assert "skipped: alice.jsonl line 2: not JSON (skipped)" in result.output
    assert json.loads((items.folder / "table10.json").read_text())["raters"] == {"alice": 1}
    answers_csv = (items.folder / "answers.csv").read_text().splitlines()
    assert len(answers_csv) == 2 and answers_csv[1].startswith(f"alice,{items.items[0].id},")
    blind = (items.folder / "items.csv").read_text()
    assert "attack" not in blind and "orig" not in blind and "Is this a realistic" in blind


# ------------------------------------------------------------------------------------------------
# The server, over HTTP.


@pytest.fixture
def served(items: ItemSet) -> Iterator[Callable[..., tuple[int, Any]]]:
    """``request(path, body=None)`` against a server on a free port, run in a thread."""
    import threading

    server = make_server(HumanEvalApp(items, ask_class=True), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def request(path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if response.headers[
                    "Content-Type"
                ] == "application/json" else raw
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    yield request
    server.shutdown()
    server.server_close()


def test_server_is_blind_and_refuses_bad_answers(served: Callable[..., tuple[int, Any]], items: ItemSet) -> None:
    status, state = served("/api/state?rater=erin")
    assert status == 200 and state["total"] == 50 and state["answered"] == 0
    assert [it["id"] for it in state["remaining"]] == order_for(items, "erin")
    assert all(set(it) == {"id", "class", "class_name", "image"} for it in state["remaining"])  # no source
    first = state["remaining"][0]
    status, png = served(first["image"])
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert served("/images/nope.png")[0] == 404
    assert served("/api/answer", {"rater": "erin", "item": "nope", "realistic": True})[0] == 400
    assert served("/api/answer", {"rater": "erin", "item": first["id"], "realistic": 1})[0] == 400
    assert served("/api/answer", {"rater": "a b", "item": first["id"], "realistic": True})[0] == 400
    assert served("/api/answer", {"rater": "erin", "item": first["id"], "realistic": True, "class": 3}) == (
        200,
        {"saved": first["id"], "answered": 1, "total": 50},
    )
    assert served("/api/answer", {"rater": "erin", "item": first["id"], "realistic": False})[0] == 409
    status, state = served("/api/state?rater=erin")
    assert state["answered"] == 1 and first["id"] not in [it["id"] for it in state["remaining"]]
    # Blind until erin has answered everything: a table that moved would name the item's generator.
    status, refused = served("/api/table")
    assert status == 403 and "a rater who has answered every item" in refused["error"]
    status, refused = served("/api/table?rater=erin")
    assert status == 403 and "(erin: 1 of 50)" in refused["error"] and "--table" in refused["error"]
    for it in state["remaining"]:
        assert served("/api/answer", {"rater": "erin", "item": it["id"], "realistic": False})[0] == 200
    status, table = served("/api/table?rater=erin")
    assert status == 200 and table["table"]["raters"] == {"erin": 50} and "Table 10" in table["markdown"]
    assert served("/api/table?rater=frank")[0] == 403


# ------------------------------------------------------------------------------------------------
# The page, in a real browser.


def _start_server(run_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """``atgan human-eval`` in its own process on a free port; returns it and its address."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "atgan_plugin.cli", "human-eval", str(run_dir), "--port", "0", "--ask-class"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("serving the human evaluation on "):
            return process, line.split()[5]
    process.wait()
    raise AssertionError("the server did not start:\n" + "".join(lines))


def _answer(
    page: Any, given: dict[str, tuple[bool, int]], rule: Callable[[str, int], tuple[bool, int]], count: int
) -> None:
    """Answers ``count`` items on ``page`` with the keyboard (y/n, then the class digit), recording them."""
    for _ in range(count):
        item = page.get_attribute("#item", "data-item")
        shown = int(page.get_attribute("#item", "data-class"))
        realistic, cls = rule(item, shown)
        answered = int(page.get_attribute("#progress", "data-answered"))
        page.keyboard.press("y" if realistic else "n")
        page.keyboard.press(str(cls))
        page.wait_for_function(f"Number(document.querySelector('#progress').dataset.answered) === {answered + 1}")
        given[item] = (realistic, cls)


def test_two_raters_in_a_browser_with_a_killed_server(demo_run: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/setup does)")
    run_dir = copy_run(demo_run, tmp_path / "run")
    assert invoke(run_dir, "--per-class", "1", "--seed", "3", "--csv").exit_code == 0  # 20 items
    items = load_items(run_dir / "human-eval")
    assert items is not None and len(items.items) == 20
    rules = {
        "alice": lambda item, shown: (int(item, 16) % 3 != 0, shown),
        "bob": lambda item, shown: (int(item, 16) % 2 == 0, (shown + 1) % 10),
    }
    given: dict[str, dict[str, tuple[bool, int]]] = {"alice": {}, "bob": {}}
    server, url = _start_server(run_dir)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = {rater: browser.new_context().new_page() for rater in rules}
            # alice comes with her name in the address; bob types his.
            pages["alice"].goto(url + "?rater=alice")
            pages["bob"].goto(url)
            pages["bob"].fill("#rater-name", "bob")
            pages["bob"].press("#rater-name", "Enter")
            for rater, page in pages.items():
                page.wait_for_selector("#rating:not([hidden])")
                _answer(page, given[rater], rules[rater], 8 if rater == "alice" else 5)

            # The server dies; the answer in flight is not saved and the page says so.
            server.send_signal(signal.SIGKILL)
            server.wait()
            in_flight = pages["alice"].get_attribute("#item", "data-item")
            pages["alice"].keyboard.press("y")
            pages["alice"].keyboard.press("0")
            pages["alice"].wait_for_function("document.querySelector('#status').textContent.startsWith('not saved')")
            assert pages["alice"].get_attribute("#item", "data-item") == in_flight

            # A new server (another port); reopening resumes each rater where they stopped.
            server, url = _start_server(run_dir)
            for rater, page in pages.items():
                page.goto(url + f"?rater={rater}")
                page.wait_for_selector("#rating:not([hidden])")
                assert page.get_attribute("#progress", "data-answered") == str(len(given[rater]))
                assert page.get_attribute("#item", "data-item") not in given[rater]
                _answer(page, given[rater], rules[rater], 20 - len(given[rater]))
                page.wait_for_selector("#done:not([hidden]) table")
            browser.close()
    finally:
        server.kill()
        server.wait()

    # Table 10 (written by the last page to finish) equals what was answered.
    table = json.loads((run_dir / "human-eval" / "table10.json").read_text())
    info = items.index
    assert table["raters"] == {"alice": 20, "bob": 20} and table["problems"] == []
    for row in table["classes"]:
        for source in ("orig", "attack"):
            votes = [
                given[r][i][0]
                for r in given
                for i in given[r]
                if info[i].cls == row["class"] and info[i].source == source
            ]
            assert (row[source]["realistic"], row[source]["n"]) == (sum(votes), len(votes))
    assert table["all"]["orig"]["class_right"] == 10  # alice named the shown class, bob never did
    same = sum(given["alice"][i][0] == given["bob"][i][0] for i in info)
    assert table["agreement"]["percent_agreement"] == pytest.approx(100 * same / 20)
    result = invoke(run_dir, "--table")
    assert result.exit_code == 0 and "raters (answers): alice (20), bob (20)" in result.output
