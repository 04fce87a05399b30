"""``atgan human-eval`` against a careless user and an attacker: one row per gap a probe found.

Blind until a rater has finished; only this machine's own page answers (Host, Origin, content type);
one server per run folder; socket timeouts; a named error, never a traceback, for each bad request,
each damaged ``items.json`` and each bad answers line; nothing read or written outside the run folder.
Requests go over raw sockets, so that every header is exactly what the test says. The item set is made
once per module and copied per test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from atgan_plugin.cli import main
from atgan_plugin.human_eval import (
    HumanEvalApp,
    ServerBusyError,
    build_items,
    load_items,
    make_server,
    read_all_answers,
)
from atgan_plugin.human_eval import server as server_module
from atgan_plugin.human_eval.items import ItemSet
from atgan_plugin.human_eval.request_checks import host_problem
from atgan_plugin.runs import RunFolderError


@pytest.fixture(scope="module")
def master(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with an item set of 20 items (1 per class, no real control)."""
    run = tmp_path_factory.mktemp("guards") / "run"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("*.safetensors"))
    for fit in demo_run.glob("*.safetensors"):
        (run / fit.name).symlink_to(fit)
    build_items(run, per_class=1, seed=2)
    return run


@pytest.fixture
def run_dir(master: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(master, run, symlinks=True)
    return run


@pytest.fixture
def items(run_dir: Path) -> ItemSet:
    loaded = load_items(run_dir / "human-eval")
    assert loaded is not None
    return loaded


Request = Callable[..., tuple[int, Any]]


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, Any]:
    """Sends ``head`` (request line and headers, without the blank line) and ``body``; the status and the
    decoded JSON (or raw bytes) of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head_bytes, _, payload = reply.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


@pytest.fixture
def served(items: ItemSet) -> Iterator[tuple[Request, int]]:
    """``request(method, path, body=None, **headers)`` with this server's own Host and JSON by default."""
    server = make_server(HumanEvalApp(items), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def request(method: str, path: str, body: Any = None, **headers: str | None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        given = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", "Content-Length": str(len(data))}
        given |= {k.replace("_", "-"): v for k, v in headers.items()}
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in given.items() if v is not None)]
        return raw_request(port, "\r\n".join(lines), data)

    yield request, port
    server.shutdown()
    server.server_close()


def answered(items: ItemSet) -> dict[str, int]:
    by_rater, problems = read_all_answers(items)
    assert problems == []
    return {rater: len(answers) for rater, answers in by_rater.items()}


# ------------------------------------------------------------------------------------------------
# Blind until a rater has finished.


def test_the_table_is_refused_until_the_rater_has_answered_every_item(
    served: tuple[Request, int], items: ItemSet
) -> None:
    request, _ = served
    ids = [it.id for it in items.items]
    for count, item in enumerate(ids):
        for query in ("", "?rater=ann", "?rater=bob"):
            status, reply = request("GET", f"/api/table{query}")
            assert status == 403 and "table" not in reply, (count, query)
        assert request("POST", "/api/answer", {"rater": "ann", "item": item, "realistic": True})[0] == 200
    status, reply = request("GET", "/api/table?rater=ann")
    assert status == 200 and reply["table"]["raters"] == {"ann": 20}
    assert request("GET", "/api/table?rater=bob")[0] == 403 and request("GET", "/api/table")[0] == 403
    result = CliRunner().invoke(main, ["human-eval", str(items.folder.parent), "--table"])  # the operator's way
    assert result.exit_code == 0 and "raters (answers): ann (20)" in result.output


# ------------------------------------------------------------------------------------------------
# Only this machine's own page.


def test_a_foreign_host_origin_or_content_type_is_refused_and_nothing_is_saved(
    served: tuple[Request, int], items: ItemSet
) -> None:
    request, port = served
    answer = {"rater": "eve", "item": items.items[0].id, "realistic": True}
    refused = [
        dict(Host="attacker.example"),  # DNS rebinding: the page's own name
        dict(Host=f"attacker.example:{port}"),
        dict(Host=f"127.0.0.1:{port + 1}"),
        dict(Host=None),
        dict(Origin="http://attacker.example"),
        dict(Origin=f"http://attacker.example:{port}"),
        dict(Origin="null"),
        dict(Origin=f"https://127.0.0.1:{port}"),
        dict(Content_Type="text/plain"),  # what a plain form sends without asking
        dict(Content_Type="application/x-www-form-urlencoded"),
        dict(Content_Type=None),
    ]
    for headers in refused:
        status, reply = request("POST", "/api/answer", answer, **headers)
        assert status in (403, 415) and isinstance(reply, dict) and reply["error"], headers
        if "Host" in headers or "Origin" in headers:
            assert request("GET", "/api/state?rater=eve", **headers)[0] == 403, headers
    assert answered(items) == {}
    for own in (dict(), dict(Host=f"localhost:{port}"), dict(Origin=f"http://127.0.0.1:{port}")):
        assert request("GET", "/api/state?rater=eve", **own)[0] == 200, own
    assert request("POST", "/api/answer", answer, Origin=f"http://localhost:{port}")[0] == 200
    assert answered(items) == {"eve": 1}


@pytest.mark.parametrize(
    "host, bound, ok",
    [
        ("127.0.0.1:8765", "127.0.0.1", True),
        ("LOCALHOST:8765", "127.0.0.1", True),
        ("[::1]:8765", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", False),  # port 80
        ("10.0.0.5:8765", "127.0.0.1", False),
        ("10.0.0.5:8765", "0.0.0.0", True),  # served to the network: an IP literal cannot be rebound
        ("evil.example:8765", "0.0.0.0", False),
        ("box.lan:8765", "box.lan", True),
        ("127.0.0.1:08765x", "127.0.0.1", False),
        ("::1:8765", "127.0.0.1", False),
    ],
)
def test_host_names(host: str, bound: str, ok: bool) -> None:
    assert (host_problem(host, bound, 8765) is None) is ok


# ------------------------------------------------------------------------------------------------
# One server per run folder.

HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from atgan_plugin.human_eval.server_lock import ServerLock
ServerLock(Path(sys.argv[1])).acquire(host="127.0.0.1", port=1)
print("locked", flush=True)
time.sleep(600)
"""


def test_one_server_per_run_folder_and_a_dead_owners_lock_is_taken_over(items: ItemSet) -> None:
    first = make_server(HumanEvalApp(items), port=0)
    try:
        with pytest.raises(
            ServerBusyError, match=rf"another atgan human-eval \(PID {os.getpid()}, http://127\.0\.0\.1"
        ):
            make_server(HumanEvalApp(items), port=0)
        result = CliRunner().invoke(main, ["human-eval", str(items.folder.parent), "--port", "0"])
        assert result.exit_code == 1 and "another atgan human-eval (PID" in result.output
    finally:
        first.server_close()
    make_server(HumanEvalApp(items), port=0).server_close()  # released: the next one starts

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(items.folder)], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(ServerBusyError, match=rf"PID {holder.pid}\b"):
            make_server(HumanEvalApp(items), port=0)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((items.folder / "server.lock").read_text())["pid"] == holder.pid  # its stale record
    make_server(HumanEvalApp(items), port=0).server_close()  # the dead owner's lock is taken over


def test_a_silent_client_is_dropped_after_the_socket_timeout(items: ItemSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "SOCKET_TIMEOUT", 0.5)
    server = make_server(HumanEvalApp(items), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            silent.sendall(b"POST /api/answer HTTP/1.1\r\n")  # and then nothing
            assert raw_request(port, f"GET /api/config HTTP/1.1\r\nHost: 127.0.0.1:{port}")[0] == 200
            assert silent.recv(1024) == b""  # closed by the server, well before the client's 10 s
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------
# Named errors for bad requests.

DEEP = ("[" * 2000 + "]" * 2000).encode()

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (id, body as sent, headers, status, message)
    ("list-valued item", '{"rater": "ann", "item": ["x"], "realistic": true}', {}, 400, "'item' as strings"),
    ("object-valued item", '{"rater": "ann", "item": {"a": 1}, "realistic": true}', {}, 400, "'item' as strings"),
    ("list-valued rater", '{"rater": ["ann"], "item": "x", "realistic": true}', {}, 400, "'rater' and its 'item'"),
    ("Content-Length abc", "{}", {"Content-Length": "abc"}, 400, "Content-Length 'abc'"),
    ("Content-Length -1", "{}", {"Content-Length": "-1"}, 400, "Content-Length '-1'"),
    ("Content-Length 10**30", "{}", {"Content-Length": "1" + "0" * 30}, 400, "an answer is a JSON object of 1 to 4096"),
    ("JSON 2,000 deep", DEEP.decode(), {}, 400, "not a JSON answer: RecursionError"),
    ("a list", "[1, 2]", {}, 400, "an answer is a JSON object"),
    ("not JSON", "{oops", {}, 400, "not a JSON answer: JSONDecodeError"),
    ("4,097 bytes", " " * 4097, {}, 400, "an answer is a JSON object of 1 to 4096 bytes"),
    ("not UTF-8", '{"rater": "\udcff"}', {}, 400, "not a JSON answer"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, headers, status, message", [r[1:] for r in BAD_REQUESTS], ids=[r[0] for r in BAD_REQUESTS]
)
def test_bad_requests_are_named_errors(
    served: tuple[Request, int], items: ItemSet, body: str, headers: dict[str, Any], status: int, message: str
) -> None:
    request, _ = served
    data = body.encode("utf-8", "surrogateescape")
    got, reply = request("POST", "/api/answer", data, **{k.replace("-", "_"): v for k, v in headers.items()})
    assert (got, isinstance(reply, dict)) == (status, True), reply
    assert message in reply["error"] and "Traceback" not in reply["error"]
    assert request("GET", "/api/config")[0] == 200  # still serving


# ------------------------------------------------------------------------------------------------
# A damaged or tampered run folder.


def _edit_items(items: ItemSet, change: Callable[[dict[str, Any]], None]) -> None:
    path = items.folder / "items.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set_first(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["items"][0].__setitem__(key, value)


ITEM_SETS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("class 99", _set_first("class", 99), r"has class 99, not one of the 10 classes"),
    ("class -1", _set_first("class", -1), r"has class -1"),
    ("class '3'", _set_first("class", "3"), r"has class '3'"),
    ("no settings.per_class", lambda d: d["settings"].pop("per_class"), r"settings\.per_class must be an integer >= 1, got None"),
    ("settings a list", lambda d: d.__setitem__("settings", []), r"'settings' must be an object"),
    ("source 'fake'", _set_first("source", "fake"), r"has source 'fake'"),
    ("image ../../etc/passwd", _set_first("image", "images/../../../etc/passwd"), r"leaves .* \(an absolute path or '\.\.'\)"),
    ("image absolute", _set_first("image", "/etc/passwd"), r"not a file under images/"),
    ("image images//etc", _set_first("image", "images/\\..\\x.png"), r"is not a relative path inside"),
    ("id twice", lambda d: d["items"][1].__setitem__("id", d["items"][0]["id"]), r"is listed twice"),
    ("no items", lambda d: d.__setitem__("items", []), r"'items' must be a non-empty list"),
    ("class names missing", lambda d: d.pop("class_names"), r"'class_names' must be a non-empty list of strings"),
    ("format 7", lambda d: d.__setitem__("format", 7), r"not an item set of format 1"),
]  # fmt: skip


@pytest.mark.parametrize("change, message", [r[1:] for r in ITEM_SETS], ids=[r[0] for r in ITEM_SETS])
def test_a_damaged_item_set_is_a_named_error(
    items: ItemSet, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    _edit_items(items, change)
    with pytest.raises(RunFolderError, match=r"items\.json is not a usable item set: .*" + message):
        load_items(items.folder)
    result = CliRunner().invoke(main, ["human-eval", str(items.folder.parent), "--table"])
    assert result.exit_code == 1 and "is not a usable item set" in result.output and "Traceback" not in result.output


def test_deep_or_foreign_items_json_is_a_named_error(items: ItemSet, tmp_path: Path) -> None:
    (items.folder / "items.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RunFolderError, match=r"is not an item set written by atgan human-eval \(maximum recursion"):
        load_items(items.folder)
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    (items.folder / "items.json").unlink()
    (items.folder / "items.json").symlink_to(outside)
    with pytest.raises(RunFolderError, match=r"is a link leading out of"):
        load_items(items.folder)


BAD_LINES = [
    ('{"item": ["x"], "realistic": true}', "unknown item ['x']"),
    ('{"item": {"a": 1}, "realistic": true}', "unknown item {'a': 1}"),
    ('{"item": "ITEM", "realistic": true, "class": ' + "9" * 5000 + "}", "not an answer (ValueError)"),
    ("[" * 5000 + "]" * 5000, "not an answer (RecursionError)"),
    ('{"item": "ITEM", "realistic": true, "class": 99}', "'class' must be null or a class index in [0, 10), got 99"),
    ('{"item": "ITEM", "realistic": true, "time": ["a"]}', None),  # a bad time is dropped, the answer counts
    ("\udcff", "not UTF-8 text"),
]


@pytest.mark.parametrize("line, problem", BAD_LINES, ids=[str(i) for i in range(len(BAD_LINES))])
def test_one_bad_answers_line_is_reported_never_stops_the_table(items: ItemSet, line: str, problem: str | None) -> None:
    first, second = items.items[0].id, items.items[1].id
    app = HumanEvalApp(items)
    app.answer({"rater": "ann", "item": first, "realistic": True})
    with open(items.folder / "answers" / "ann.jsonl", "ab") as f:
        f.write(line.replace("ITEM", second).encode("utf-8", "surrogateescape") + b"\n")
    app.answer({"rater": "bob", "item": first, "realistic": False})
    by_rater, problems = read_all_answers(items)
    assert by_rater["bob"][0].realistic is False and by_rater["ann"][0].item == first
    assert problems == ([] if problem is None else [f"ann.jsonl line 2: {problem} (skipped)"])
    assert app.state("ann")["answered"] == (1 if problem else 2)  # ann goes on
    result = CliRunner().invoke(main, ["human-eval", str(items.folder.parent), "--table"])
    assert result.exit_code == 0 and "bob (1)" in result.output


# ------------------------------------------------------------------------------------------------
# Nothing outside the run folder is served, read or written.


def test_an_image_linked_from_outside_is_never_served(
    served: tuple[Request, int], items: ItemSet, tmp_path: Path
) -> None:
    request, _ = served
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    item = items.items[0]
    (items.folder / item.image).unlink()
    (items.folder / item.image).symlink_to(secret)
    status, reply = request("GET", f"/{item.image}")
    assert (
        status == 400 and "is a link leading out of" in reply["error"] and b"secret" not in json.dumps(reply).encode()
    )
    (items.folder / item.image).unlink()
    (items.folder / item.image).symlink_to(items.folder / items.items[1].image)  # a link inside: fine
    assert request("GET", f"/{item.image}")[0] == 200


def test_answers_files_and_folders_that_link_elsewhere_are_refused(
    served: tuple[Request, int], items: ItemSet, tmp_path: Path
) -> None:
    request, _ = served
    target = tmp_path / "victim.txt"
    target.write_text("someone else's\n")
    answers = items.folder / "answers"
    answers.mkdir()
    (answers / "mallory.jsonl").symlink_to(target)
    answer = {"rater": "mallory", "item": items.items[0].id, "realistic": True}
    for status, reply in (request("GET", "/api/state?rater=mallory"), request("POST", "/api/answer", answer)):
        assert status == 400 and "is a link" in reply["error"]
    assert target.read_text() == "someone else's\n"
    by_rater, problems = read_all_answers(items)
    assert by_rater == {} and problems[0].startswith("mallory.jsonl: ") and "is a link" in problems[0]

    shutil.rmtree(answers)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    answers.symlink_to(elsewhere)
    status, reply = request("POST", "/api/answer", answer)
    assert status == 400 and "is a link leading out of" in reply["error"]
    assert list(elsewhere.iterdir()) == []
    assert read_all_answers(items)[1] == [
        f"answers: the answers folder 'human-eval/answers' is a link leading out of {items.folder.parent} (skipped)"
    ]
