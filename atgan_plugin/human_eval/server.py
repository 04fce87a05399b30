"""The local page of a human evaluation, served by the standard library's ``ThreadingHTTPServer``.

Routes (all JSON except the page, its script and style, and the images):

- ``GET /`` the page; ``GET /static/page.js``, ``/static/page.css``;
- ``GET /api/config``: the questions' settings and the default rater;
- ``GET /api/state?rater=NAME``: the rater's unanswered items in the rater's own order, as
  ``{id, class, class_name, image}`` (never the source), and the counts;
- ``POST /api/answer`` ``{rater, item, realistic, class}`` (``application/json``): appended and
  fsync-ed before the reply; a second answer to an item is refused (``409``) and the first one stays;
- ``GET /api/table?rater=NAME``: writes and returns Table 10, only for a rater who has answered
  every item (``403`` otherwise: a table that moves as one answers would name each item's generator;
  the operator's way to it is ``atgan human-eval RUN_DIR --table``);
- ``GET /images/<id>.png``: an item's image, looked up by id; its path must stay inside the run folder.

Only this machine's own page is answered (:mod:`.request_checks`: ``Host``, ``Origin``, the
content type), one server per run folder (:mod:`.server_lock`), and a client gets
:data:`SOCKET_TIMEOUT` seconds per read. Every refusal is a JSON ``{"error": ...}`` naming the
problem, never a traceback. Bound to 127.0.0.1 by default: the page is meant for people at this
machine (or an SSH tunnel).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from atgan_plugin import runs
from atgan_plugin.human_eval.answers import AnswersFileError, append_answer, check_rater, read_answers
from atgan_plugin.human_eval.export import write_table
from atgan_plugin.human_eval.items import ItemSet, order_for
from atgan_plugin.human_eval.request_checks import body_length, content_type_problem, host_problem, origin_problem
from atgan_plugin.human_eval.server_lock import ServerBusyError, ServerLock

__all__ = ["SOCKET_TIMEOUT", "EvaluationServer", "HumanEvalApp", "ServerBusyError", "make_server"]

_STATIC = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
}
_MAX_BODY = 4096  # an answer is a few dozen bytes
SOCKET_TIMEOUT = 15.0  # seconds a client may take per read or write: a stalled one cannot hold a thread


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
        rater, item = body.get("rater"), body.get("item")
        if not isinstance(rater, str) or not isinstance(item, str):
            raise ValueError("an answer names its 'rater' and its 'item' as strings")
        check_rater(rater)
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

    def table(self, rater: str | None) -> tuple[HTTPStatus, dict[str, Any]]:
        """Table 10 for a rater who has answered every item (written to ``table10.json`` / ``.md``); 403 else."""
        operator = "the operator sees it with atgan human-eval RUN_DIR --table"
        if rater is None:
            return HTTPStatus.FORBIDDEN, {
                "error": f"the table is shown to a rater who has answered every item; {operator}"
            }
        with self.lock:
            answered = len(read_answers(self.items, check_rater(rater))[0])
            if answered < len(self.items.items):
                return HTTPStatus.FORBIDDEN, {
                    "error": f"the table is shown once every item is answered ({rater}: {answered} of "
                    f"{len(self.items.items)}); {operator}"
                }
            table, markdown = write_table(self.items)
        return HTTPStatus.OK, {"table": table, "markdown": markdown}

    def image(self, item_id: str) -> tuple[HTTPStatus, bytes | dict[str, Any]]:
        """An item's PNG bytes, read only from inside the run folder."""
        item = self.items.index.get(item_id)
        if item is None:
            return HTTPStatus.NOT_FOUND, {"error": "no such item"}
        path = runs.path_inside(self.items.folder, item.image, f"the image of item {item.id}")
        if not path.is_file():
            return HTTPStatus.NOT_FOUND, {"error": f"the image of item {item.id} is missing from the run folder"}
        return HTTPStatus.OK, path.read_bytes()


def _handler(app: HumanEvalApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "atgan-human-eval"
        timeout = SOCKET_TIMEOUT
        server: EvaluationServer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the terminal shows where the page is, not every image request

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
            self._send(status, json.dumps(data).encode("utf-8"), "application/json")

        def _served(self, work: Callable[[], None]) -> None:
            """Runs ``work`` for a request of this server's own page; every failure is a JSON error."""
            try:
                bound, port = self.server.bound_host, self.server.server_address[1]
                problem = host_problem(self.headers.get("Host"), bound, port) or origin_problem(
                    self.headers.get("Origin"), bound, port
                )
                if problem is not None:
                    self._json(HTTPStatus.FORBIDDEN, {"error": problem})
                    return
                work()
            except (ValueError, AnswersFileError, runs.RunFolderError) as error:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            except (OSError, RecursionError) as error:
                if isinstance(error, (BrokenPipeError, ConnectionResetError, TimeoutError)):
                    return  # the client went away: nobody to answer
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"cannot answer: {error}"})
            except Exception as error:  # noqa: BLE001 - a bug must not reach the client as a traceback
                print(f"atgan human-eval: {self.command} {self.path[:200]}: {error!r}", file=sys.stderr)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(error).__name__})"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._served(self._get)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self._served(self._post)

        def _get(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query, max_num_fields=16)
            rater = query.get("rater", [None])[0]
            if url.path in _STATIC:
                name, content_type = _STATIC[url.path]
                page = resources.files("atgan_plugin.human_eval").joinpath("static", name).read_bytes()
                self._send(HTTPStatus.OK, page, content_type)
            elif url.path == "/api/config":
                self._json(HTTPStatus.OK, app.config())
            elif url.path == "/api/state":
                self._json(HTTPStatus.OK, app.state(rater or ""))
            elif url.path == "/api/table":
                self._json(*app.table(rater))
            elif url.path.startswith("/images/") and url.path.endswith(".png"):
                status, body = app.image(url.path[len("/images/") : -len(".png")])
                if isinstance(body, bytes):
                    self._send(status, body, "image/png")
                else:
                    self._json(status, body)
            elif url.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path[:200]}"})

        def _post(self) -> None:
            if urlsplit(self.path).path != "/api/answer":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path[:200]}"})
                return
            problem = content_type_problem(self.headers.get("Content-Type"))
            if problem is not None:
                self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": problem})
                return
            length = body_length(self.headers.get("Content-Length"), _MAX_BODY)
            try:
                body = json.loads(self.rfile.read(length))
            except (ValueError, RecursionError) as error:
                raise ValueError(f"not a JSON answer: {type(error).__name__}: {str(error)[:200]}") from None
            if not isinstance(body, dict):
                raise ValueError("not a JSON answer: an answer is a JSON object")
            self._json(*app.answer(body))

    return Handler


class EvaluationServer(ThreadingHTTPServer):
    """The page's server: answers on daemon threads, holds the run folder's lock until closed."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], lock: ServerLock):
        self.bound_host = address[0]
        self.lock = lock  # before binding: a failed bind calls server_close, which releases it
        super().__init__(address, handler)

    def server_close(self) -> None:
        super().server_close()
        self.lock.release()


def make_server(app: HumanEvalApp, host: str = "127.0.0.1", port: int = 8765) -> EvaluationServer:
    """A server for ``app`` bound to ``(host, port)`` (port 0: any free port). A :class:`ServerBusyError`
    when another server holds the run folder's lock; ``OSError`` when the port is taken."""
    lock = ServerLock(app.items.folder)
    lock.acquire(host=host)
    try:
        server = EvaluationServer((host, port), _handler(app), lock)
    except BaseException:
        lock.release()
        raise
    lock.update(host=host, port=server.server_address[1])
    return server
