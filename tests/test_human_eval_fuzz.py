"""A bounded fuzz of the evaluation server's API: 400 seeded random requests on loopback, in seconds.

Methods, paths, Host, Origin, content types, lengths and bodies are drawn from lists of the valid and
of the hostile (traversals, deep JSON, wrong types, foreign pages, lengths that lie). Whatever comes,
the server must answer with a named error or a correct result and go on serving: never a 500, a
table only to a rater who has answered every item, nothing read or written outside the run folder,
and every saved answer valid and saved once. The item set is made without networks (``items.json``
and PNGs written here), so the test needs neither a fit nor the dataset. A failure prints its seed
and request number; rerun with that seed to replay it.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from atgan_plugin.human_eval import HumanEvalApp, load_items, make_server, read_all_answers
from atgan_plugin.human_eval import server as server_module
from atgan_plugin.human_eval.items import ItemSet

SEED = 23
REQUESTS = 400
# What an answer from this server may be: a named error or a result. 500 is never one.
ALLOWED = {200, 204, 400, 403, 404, 409, 414, 415, 431, 501, 505}


def make_item_set(run: Path) -> ItemSet:
    """20 items (two per class, orig and attack) with 4x4 PNGs, as build_items would store them."""
    folder = run / "human-eval"
    (folder / "images").mkdir(parents=True)
    rng = random.Random(0)
    records = []
    for k in range(10):
        for source in ("orig", "attack"):
            item_id = f"{rng.getrandbits(48):012x}"
            Image.new("L", (4, 4), color=k * 20).save(folder / "images" / f"{item_id}.png")
            records.append({"id": item_id, "class": k, "source": source, "pair": k, "image": f"images/{item_id}.png"})
    settings = {"seed": 0, "per_class": 1, "real_control": 0, "dataset": "fashion-mnist"}
    names = [f"class {k}" for k in range(10)]
    (folder / "items.json").write_text(
        json.dumps({"format": 1, "settings": settings, "class_names": names, "items": records})
    )
    items = load_items(folder)
    assert items is not None
    return items


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


class Draw:
    """One random request: method, target, headers and body, drawn from ``rng``."""

    def __init__(self, rng: random.Random, items: ItemSet, port: int):
        self.rng, self.port = rng, port
        self.ids = [it.id for it in items.items]

    def pick(self, *choices: Any) -> Any:
        return self.rng.choice(choices)

    def rater(self) -> Any:
        return self.pick("ann", "bob", "ann", "a b", "../x", "", "x" * 70, ["ann"], 7, None, "ann/../../bob", "é")

    def item(self) -> Any:
        return self.pick(*self.ids[:3], *self.ids[:3], "nope", ["x"], {"a": 1}, 3, None, "../items", "")

    def path(self) -> str:
        rater = str(self.rater())
        return self.pick(
            "/",
            "/static/page.js",
            "/static/page.css",
            "/api/config",
            f"/api/state?rater={rater}",
            f"/api/state?rater={rater}&rater=bob",
            f"/api/table?rater={rater}",
            "/api/table",
            f"/images/{self.pick(*self.ids)}.png",
            "/images/../items.json",
            "/images/%2e%2e/items.json",
            "/images/..%2fitems.json.png",
            "/images/" + "../" * 8 + "etc/passwd.png",
            "//etc/passwd",
            "/api/answer",
            "/favicon.ico",
            "/human-eval/items.json",
            "/" + "a" * self.rng.randint(1, 3000),
            "/api/state?" + "&".join(f"k{i}=v" for i in range(40)),
            "*",
        )

    def body(self) -> bytes:
        kind = self.rng.randrange(8)
        if kind <= 2:  # an answer, its fields drawn from valid and invalid values
            answer = {
                "rater": self.rater(),
                "item": self.item(),
                "realistic": self.pick(True, False, True, 1, "yes", None, [True]),
                "class": self.pick(None, 0, 9, 10, -1, True, 2.5, "3"),
            }
            if self.rng.random() < 0.2:
                del answer[self.pick("rater", "item", "realistic")]
            return json.dumps(answer).encode()
        if kind == 3:
            depth = self.rng.choice([10, 500, 2_000])
            return ("[" * depth + "]" * depth).encode()[:4096]
        if kind == 4:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200)))
        if kind == 5:
            return self.pick(b"[]", b"null", b"1", b'"x"', b"{}", b'{"rater": "ann"}', b"9" * 4000)
        if kind == 6:
            return b""
        return json.dumps({"rater": "ann", "item": self.pick(*self.ids), "realistic": True, "x": "y" * 5000}).encode()

    def valid(self) -> tuple[str, str, dict[str, str | None], bytes]:
        """A request the page itself would send: an answer, its state, its config or an image."""
        kind = self.rng.randrange(4)
        rater = self.pick("ann", "bob")
        if kind <= 1:
            answer = {"rater": rater, "item": self.pick(*self.ids), "realistic": self.pick(True, False)}
            body = json.dumps({**answer, "class": self.pick(None, *range(10))}).encode()
            method, path = "POST", "/api/answer"
        else:
            body, method = b"", "GET"
            path = self.pick(f"/api/state?rater={rater}", "/api/config", f"/images/{self.pick(*self.ids)}.png")
        headers: dict[str, str | None] = {"Host": f"127.0.0.1:{self.port}", "Origin": None}
        if method == "POST":
            headers |= {"Origin": f"http://127.0.0.1:{self.port}", "Content-Type": "application/json"}
            headers["Content-Length"] = str(len(body))
        return method, path, headers, body

    def request(self) -> tuple[bytes, bool, str, str]:
        """The request's bytes, whether its body is shorter than it says, its method and its path: half are
        what the page sends, with one part replaced by a random one half of the time; the rest all random."""
        method, path, headers, body = self.valid()
        own = f"127.0.0.1:{self.port}"
        parts = ["method", "path", "host", "origin", "type", "length", "body"]
        changed = set(parts) if self.rng.random() < 0.5 else {self.pick(*parts)} if self.rng.random() < 0.5 else set()
        if "method" in changed:
            method = self.pick("GET", "GET", "POST", "POST", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "BREW")
        if "path" in changed:
            path = self.path() if method != "POST" or self.rng.random() < 0.2 else "/api/answer"
        if "body" in changed:
            body = self.body() if method in ("POST", "PUT") else b""
        if "host" in changed:
            headers["Host"] = self.pick(own, f"localhost:{self.port}", "attacker.example", None, f"{own}:1", "x" * 300)
        if "origin" in changed:
            headers["Origin"] = self.pick(None, f"http://{own}", "http://attacker.example", "null", "http://[::1")
        if "type" in changed:
            headers["Content-Type"] = self.pick("application/json", "text/plain", None, "application/json; x")
        short = False
        if "length" in changed or "body" in changed:
            headers["Content-Length"] = self.pick(str(len(body)), str(len(body)), "abc", "-1", "1" + "0" * 30, None)
            if self.rng.random() < 0.05:  # a body shorter than it says: the server waits, then drops the client
                headers["Content-Length"], short = str(len(body) + 10), True
        lines = [f"{method} {path} HTTP/1.{self.pick(0, 1)}"] + [
            f"{k}: {v}" for k, v in headers.items() if v is not None
        ]
        return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body, short, method, path


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("seed", [SEED])
def test_random_requests_never_break_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(server_module, "SOCKET_TIMEOUT", 0.3)  # what a lying length costs
    run = tmp_path / "run"
    items = make_item_set(run)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "canary.txt").write_text("untouched")
    before_outside, items_json = snapshot(tmp_path / "outside"), (items.folder / "items.json").read_bytes()
    server = make_server(HumanEvalApp(items, ask_class=True), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    draw = Draw(random.Random(seed), items, port)
    tables: list[tuple[int, str]] = []
    statuses: set[int] = set()
    start = time.monotonic()
    try:
        for number in range(REQUESTS):
            data, short, method, path = draw.request()
            where = f"seed {seed}, request {number}: {data[:300]!r}"
            reply = exchange(port, data)
            if not reply:
                assert short, f"no reply to {where}"
                continue
            status = int(reply.split(b" ", 2)[1])
            assert status in ALLOWED, f"{status} for {where}: {reply[:500]!r}"
            statuses.add(status)
            head, _, payload = reply.partition(b"\r\n\r\n")
            if b"Content-Type: application/json" in head:
                decoded = json.loads(payload)
                assert status < 400 or (isinstance(decoded, dict) and decoded["error"]), where
            if method == "GET" and path.startswith("/api/table") and status == 200:
                tables.append((number, path))
            if status == 200 and path.startswith("/images/") and method == "GET":
                assert payload.startswith(b"\x89PNG"), where
        assert time.monotonic() - start < 30, "the fuzz is meant to take seconds"
        assert {200, 400, 403, 404, 409, 415} <= statuses, statuses  # it reached every kind of answer
        assert (
            json.loads(
                exchange(port, f"GET /api/config HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()).partition(
                    b"\r\n\r\n"
                )[2]
            )["total"]
            == 20
        )
    finally:
        server.shutdown()
        server.server_close()
    by_rater, problems = read_all_answers(items)
    assert problems == []  # every saved answer is valid and saved once
    assert set(by_rater) <= {"ann", "bob"} and sum(map(len, by_rater.values())) > 0
    finished = {rater for rater, answers in by_rater.items() if len(answers) == 20}
    for number, path in tables:  # a table went only to a rater who had answered everything
        assert path.split("rater=", 1)[-1].split("&")[0] in finished, (number, path)
    assert snapshot(tmp_path / "outside") == before_outside and (items.folder / "items.json").read_bytes() == items_json
    written = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    allowed = {"human-eval/items.json", "human-eval/server.lock", "human-eval/table10.json", "human-eval/table10.md"}
    allowed |= {f"human-eval/images/{i}.png" for i in draw.ids} | {f"human-eval/answers/{r}.jsonl" for r in by_rater}
    assert written <= allowed, written - allowed
