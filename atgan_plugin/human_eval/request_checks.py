"""Which requests the evaluation server answers: those of its own page on this machine.

- ``Host`` must name the server itself: its own address or a loopback name (``localhost``,
  ``127.0.0.1``, ``[::1]``) with its own port. A page on another site that a DNS rebinding points
  at 127.0.0.1 sends its own name, and is refused. Served on a wildcard address (``--host
  0.0.0.0``) the machine's name and any IP literal are its own too: an IP literal cannot be rebound.
- ``Origin``, when a browser sends one, must be ``http://`` and such a host: a form or a script on
  another page cannot answer for a rater.
- An answer must come as ``Content-Type: application/json``: a browser sends that cross-site only
  after a CORS preflight, which this server never grants (a plain HTML form cannot send it).
- ``Content-Length`` must be a plain number of bytes within the limit.

Each check returns the problem in words (the server replies 400 or 403 with it), or ``None``.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["body_length", "content_type_problem", "host_problem", "origin_problem"]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_WILDCARD = {"", "0.0.0.0", "::"}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split(host: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` value (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif host.count(":") == 1:
        name, port_text = host.split(":")
    elif ":" in host:
        return None  # an IPv6 literal must be in brackets
    else:
        name, port_text = host, None
    if port_text is None:
        return name.lower(), None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        return None
    return name.lower(), int(port_text)


@functools.lru_cache(maxsize=8)  # the machine's names cost a lookup: once per bound address, not per request
def _own_names(bound: str) -> frozenset[str]:
    names = set(_LOOPBACK) | {bound.lower().strip("[]")}
    if bound in _WILDCARD:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def host_problem(host: str | None, bound: str, port: int) -> str | None:
    """Why the ``Host`` header ``host`` does not name this server (bound to ``bound``, ``port``)."""
    if not host:
        return "a request must name this server in its Host header"
    parts = _split(host.strip())
    if parts is None:
        return f"Host {host[:100]!r} is not a host name and port"
    name, given = parts
    own = name in _own_names(bound) or (bound in _WILDCARD and _is_ip(name))
    if not own or (given if given is not None else 80) != port:
        return f"Host {host[:100]!r} is not this server; open the page at the address atgan human-eval printed"
    return None


def origin_problem(origin: str | None, bound: str, port: int) -> str | None:
    """Why a request whose browser sent ``Origin: origin`` does not come from this server's own page."""
    if origin is None:
        return None  # same-origin GETs and non-browser clients send none
    try:
        url = urlsplit(origin)
    except ValueError:
        url = None
    if url is None or url.scheme != "http" or url.path not in ("", "/") or url.query or url.username:
        return f"requests from the page {origin[:100]!r} are refused: only this server's own page may answer"
    problem = host_problem(url.netloc, bound, port)
    return (
        None if problem is None else f"requests from {origin[:100]!r} are refused: only this server's page may answer"
    )


def content_type_problem(content_type: str | None) -> str | None:
    """Why a POST body of ``content_type`` is not an answer (answers are ``application/json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return f"an answer must be sent as Content-Type: application/json, got {(content_type or 'none')[:100]!r}"
    return None


def body_length(value: str | None, maximum: int) -> int:
    """The ``Content-Length`` ``value`` as a number of bytes in ``[1, maximum]``; a ``ValueError`` naming it otherwise."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or not 0 < int(text) <= maximum:
        raise ValueError(
            f"Content-Length {(value or 'none')[:40]!r}: an answer is a JSON object of 1 to {maximum} bytes"
        )
    return int(text)
