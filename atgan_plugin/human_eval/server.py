"""The local page of a human evaluation, served by the standard library's ``ThreadingHTTPServer``.

Routes (all JSON except the page, its script and style, and the images):

- ``GET /`` the page; ``GET /static/page.js``, ``/static/page.css``;
- ``GET /api/config``: the questions' settings and the default rater;
- ``GET /api/state?rater=NAME``: the rater's unanswered items in the rater's own order, as
  ``{id, class, class_name, image}`` (never the source), and the counts;
- ``POST /api/answer`` ``{rater, item, realistic, class}``: appended and fsync-ed before the reply;
  a second answer to an item is refused (``409``) and the first one stays;
- ``GET /api/table``: writes and returns Table 10 (``table10.json``, ``table10.md``);
- ``GET /images/<id>.png``: an item's image, looked up by id (no other file is ever served).

Bound to 127.0.0.1 by default: the page is meant for people at this machine (or an SSH tunnel).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from atgan_plugin.human_eval.answers import AnswersFileError, append_answer, check_rater, read_answers
from atgan_plugin.human_eval.export import write_table
from atgan_plugin.human_eval.items import ItemSet, order_for

__all__ = ["HumanEvalApp", "make_server"]

_STATIC = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
}
_MAX_BODY = 4096  # an answer is a few dozen bytes


class HumanEvalApp:
    """What the handlers share: the item set, the settings of the page and one lock for the files."""

    def __init__(self, items: ItemSet, *, ask_class: bool = False, rater: str | None = None):
        self.items = items
        self.ask_class = ask_class
        self.rater = check_rater(rater) if rater is not None else None
        self.lock = threading.Lock()  # one answer at a time: check "not answered yet", then append

    def config(self) -> dict[str, Any]:
        return {
            "ask_class": self.ask_class,
            "class_names": list(self.items.class_names),
            "rater": self.rater,
            "total": len(self.items.items),
        }

    def state(self, rater: str) -> dict[str, Any]:
        with self.lock:
            answers, _ = read_answers(self.items, check_rater(rater))
        done = {a.item for a in answers}
        info = self.items.index
        remaining = [info[item_id] for item_id in order_for(self.items, rater) if item_id not in done]
        return {
            "rater": rater,
            "answered": len(done),
            "total": len(info),
            "remaining": [
                {
                    "id": it.id,
                    "class": it.cls,
                    "class_name": self.items.class_names[it.cls],
                    "image": f"/images/{it.id}.png",
                }
                for it in remaining
            ],
        }

    def answer(self, body: dict[str, Any]) -> tuple[HTTPStatus, dict[str, Any]]:
        rater = check_rater(str(body.get("rater", "")))
        item = body.get("item")
        with self.lock:
            answers, _ = read_answers(self.items, rater)
            if any(a.item == item for a in answers):
                return HTTPStatus.CONFLICT, {
                    "error": f"item {item} is already answered; the first answer counts",
                    "answered": len(answers),
                }
            # The body's values are untyped JSON; append_answer checks them (parse_answer) before writing.
            append_answer(self.items, rater, item, body.get("realistic"), body.get("class"))  # type: ignore[arg-type]
        return HTTPStatus.OK, {"saved": item, "answered": len(answers) + 1, "total": len(self.items.items)}

    def table(self) -> dict[str, Any]:
        with self.lock:
            table, markdown = write_table(self.items)
        return {"table": table, "markdown": markdown}


def _handler(app: HumanEvalApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "atgan-human-eval"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the terminal shows where the page is, not every image request

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode("utf-8"), "application/json")

        def _guarded(self, work: Any) -> None:
            try:
                work()
            except (ValueError, AnswersFileError) as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path in _STATIC:
                name, content_type = _STATIC[url.path]
                self._send(
                    HTTPStatus.OK,
                    resources.files("atgan_plugin.human_eval").joinpath("static", name).read_bytes(),
                    content_type,
                )
            elif url.path == "/api/config":
                self._json(HTTPStatus.OK, app.config())
            elif url.path == "/api/state":
                self._guarded(lambda: self._json(HTTPStatus.OK, app.state(query.get("rater", [""])[0])))
            elif url.path == "/api/table":
                self._guarded(lambda: self._json(HTTPStatus.OK, app.table()))
            elif url.path.startswith("/images/") and url.path.endswith(".png"):
                item = app.items.index.get(url.path[len("/images/") : -len(".png")])
                if item is None:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "no such item"})
                else:
                    self._send(HTTPStatus.OK, (app.items.folder / item.image).read_bytes(), "image/png")
            elif url.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if urlsplit(self.path).path != "/api/answer":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= _MAX_BODY:
                self._json(
                    HTTPStatus.BAD_REQUEST, {"error": f"an answer is a JSON object of at most {_MAX_BODY} bytes"}
                )
                return
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("an answer is a JSON object")
            except ValueError as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"not a JSON answer: {error}"})
                return
            self._guarded(lambda: self._json(*app.answer(body)))

    return Handler


def make_server(app: HumanEvalApp, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server for ``app`` bound to ``(host, port)`` (port 0: any free port); OSError when taken."""
    server = ThreadingHTTPServer((host, port), _handler(app))
    server.daemon_threads = True
    return server
