"""Hostile answers for ``RecordingServer(hostile={...})``: what a registry must never get
away with (an endless body, a gzip bomb, a drip, endless ``100 Continue``, JSON nested past
the parser, a redirect to ``file://``).

Each function answers one request through the handler and returns when it is done or the
client hung up (an ``OSError`` the server swallows). Endless ones stop when the server does.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler

Behaviour = Callable[[BaseHTTPRequestHandler], None]
PIECE = b"[" + b"0," * 32767 + b"0]"  # 64 KiB of JSON-looking bytes


def _stopping(handler: BaseHTTPRequestHandler) -> threading.Event:
    event: threading.Event = handler.server.state.stopping  # type: ignore[attr-defined]
    return event


def _head(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.flush()


def endless(status: int = 200) -> Behaviour:
    """A body with no length and no end, 64 KiB at a time, as fast as the client takes it."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        _head(handler, status, {"Content-Type": "application/json"})
        stop = _stopping(handler)
        while not stop.is_set():
            handler.wfile.write(PIECE)

    return behave


@cache
def bomb_bytes(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (about 1/1000 of it on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    out = [packer.compress(zeros) for _ in range(inflated >> 20)]
    out.append(packer.flush())
    return b"".join(out)


def gzip_bomb(inflated: int = 1 << 30) -> Behaviour:
    """200, ``Content-Encoding: gzip``, a small body that inflates to ``inflated`` bytes."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        body = bomb_bytes(inflated)
        _head(
            handler,
            200,
            {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Content-Length": str(len(body)),
            },
        )
        handler.wfile.write(body)

    return behave


def drip(interval: float = 0.2) -> Behaviour:
    """A status line and one endless header, a byte every ``interval`` seconds."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        stop = _stopping(handler)
        data = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60000
        for byte in data:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            if stop.wait(interval):
                return

    return behave


def endless_continue(interval: float = 0.05) -> Behaviour:
    """After the whole body: ``100 Continue`` for ever, never a final answer."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        stop = _stopping(handler)
        while True:
            handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            handler.wfile.flush()
            if stop.wait(interval):
                return

    return behave


def nested_json(depth: int = 200_000, status: int = 201) -> Behaviour:
    """A JSON answer nested deeper than any parser's recursion limit."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        body = b"[" * depth + b"]" * depth
        _head(
            handler,
            status,
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
        )
        handler.wfile.write(body)

    return behave


def redirect(location: str, status: int = 302) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        _head(handler, status, {"Location": location, "Content-Length": "0"})

    return behave


def json_answer(status: int, payload: object, headers: dict[str, str] | None = None) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps(payload).encode()
        _head(handler, status, {"Content-Length": str(len(body)), **(headers or {})})
        handler.wfile.write(body)

    return behave


def raw(data: bytes) -> Behaviour:
    """These bytes as the whole answer, however they break HTTP."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(data)

    return behave
