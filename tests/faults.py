"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real registry.

``with FaultProxy(upstream_url) as proxy:`` then point the client at ``proxy.url`` and add
rules. Each request is matched against the rules in order (method, a regex searched in the
path without its query, and which occurrence of that match it is); the first rule that fires
decides what happens to it, every other request is forwarded unchanged.

The ``Host`` header is forwarded as the client sent it, so a registry that builds
``upload_path`` from it (``atlas-ci serve`` without ``--public-url``) hands out upload URLs
that go through this proxy too. With ``tls=`` the proxy terminates TLS; start the registry
with ``--public-url https://<proxy host:port>`` then (``FaultProxy`` binds before it needs
its upstream: ``set_upstream`` later).

Faults (``Fault.kind``):

- ``status``: answer ``status`` (429/500/502/503/504, with ``Retry-After`` if given) without
  forwarding.
- ``reset_before``: reset the connection before anything reaches the upstream.
- ``reset_after``: forward, let the upstream answer, then reset instead of relaying it.
- ``stall``: forward, let the upstream answer, then say nothing for ``seconds`` (past the
  client's read timeout) and close.
- ``cut``: forward the head and only ``after_bytes`` bytes of the body (fewer than all of
  it), then close both sides.
- ``cut_answer``: forward, then relay the upstream's head and only ``after_bytes`` bytes of
  its body (fewer than all of it), and close cleanly: a download that stopped half way, with
  every byte before the cut delivered (a reset could drop bytes the client had not read yet).
- ``malformed``: answer 200 with a body that is not JSON, without forwarding.
- ``malformed_after``: forward, then replace the upstream's answer by a 2xx that is not JSON.
- ``slow``: forward the body at ``rate`` bytes/s (a slow sink); ``proxy.slow_started`` is set
  once the first bytes went through.

``proxy.hide_headers`` (lower-case names) are dropped from every answer relayed: the
client sees a registry without, say, ``X-Atlas-Extensions``.

``Fault(..., before=fn)`` calls ``fn()`` when the fault fires, before it acts: a test makes
something happen on the registry at that very moment (another job's request, say).

It also serves as ``HTTP_PROXY`` (absolute-form targets are forwarded to the upstream) and as
``HTTPS_PROXY`` (``CONNECT`` to a 127.0.0.1 port is spliced through, untouched).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO
from urllib.parse import urlsplit

KINDS = (
    "status",
    "reset_before",
    "reset_after",
    "stall",
    "cut",
    "cut_answer",
    "malformed",
    "malformed_after",
    "slow",
)
CHUNK = 64 * 1024
MALFORMED_BODY = b'{"versions": [{"version": 1, "upload_path": '  # cut mid-value


@dataclass(frozen=True)
class Fault:
    """What to do to a matched request."""

    kind: str
    status: int = 0
    retry_after: str | None = None
    seconds: float = 5.0
    after_bytes: int = 0
    rate: int = 256 * 1024
    before: Callable[[], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")

    def __str__(self) -> str:
        if self.kind == "status":
            return f"{self.status}" + (
                f"+Retry-After:{self.retry_after}" if self.retry_after else ""
            )
        if self.kind == "cut":
            return f"cut@{self.after_bytes}"
        return self.kind


@dataclass
class Rule:
    """Fire ``fault`` on the ``occurrences`` (1-based; None: all) of METHOD + path match."""

    method: str
    path: str
    fault: Fault
    occurrences: frozenset[int] | None = frozenset({1})
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path, path) is not None


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled: what it was and which fault, if any, it got."""

    method: str
    target: str
    fault: str | None
    headers: dict[str, str] = field(default_factory=dict)


class _Request:
    def __init__(self, line: bytes, headers: list[tuple[str, str]], reader: BinaryIO) -> None:
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        self.method, target, self.version = parts
        if target.startswith(("http://", "https://")):  # absolute-form: we are HTTP_PROXY
            split = urlsplit(target)
            target = split.path or "/"
            if split.query:
                target += "?" + split.query
        self.target = target
        self.path = target.split("?", 1)[0]
        self.headers = headers
        self.reader = reader
        self.length = 0
        for name, value in headers:
            if name.lower() == "content-length":
                self.length = int(value.strip())
            if name.lower() == "transfer-encoding":
                raise ValueError("chunked bodies are not supported by the fault proxy")

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def head_bytes(self) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}"]
        for name, value in self.headers:
            if name.lower() in ("connection", "proxy-connection", "keep-alive"):
                continue
            lines.append(f"{name}: {value}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(reader: BinaryIO) -> tuple[bytes, list[tuple[str, str]]] | None:
    line = reader.readline(65537)
    if not line or not line.strip():
        return None
    headers: list[tuple[str, str]] = []
    while True:
        raw = reader.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return line, headers


def _reset(sock: socket.socket) -> None:
    """Close with RST: the peer sees 'connection reset', not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Response:
    def __init__(self, status: int, head: bytes, body: bytes) -> None:
        self.status, self.head, self.body = status, head, body


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        sock: socket.socket = self.request
        if proxy.tls is not None:
            try:
                sock = proxy.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                return  # the client refused our certificate: what the TLS tests look for
        proxy._track(sock)
        reader = sock.makefile("rb")
        try:
            while not proxy._stopping.is_set():
                head = _read_head(reader)
                if head is None:
                    return
                if head[0].startswith(b"CONNECT "):
                    self._tunnel(proxy, sock, head[0])
                    return
                try:
                    request = _Request(head[0], head[1], reader)
                except ValueError:
                    _reset(sock)
                    return
                if not self._one(proxy, sock, request):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                reader.close()
            with contextlib.suppress(OSError):
                sock.close()
            proxy._untrack(sock)

    @staticmethod
    def _tunnel(proxy: FaultProxy, sock: socket.socket, line: bytes) -> None:
        """``CONNECT host:port`` (we are HTTPS_PROXY): splice bytes, 127.0.0.1 only."""
        target = line.split(b" ")[1].decode("latin-1")
        host, _, port = target.rpartition(":")
        proxy._record_connect(target)
        if host not in ("127.0.0.1", "localhost"):
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        up = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        proxy._track(up)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while chunk := src.recv(CHUNK):
                    dst.sendall(chunk)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(up, sock), daemon=True)
        back.start()
        pump(sock, up)
        back.join(timeout=30)
        up.close()
        proxy._untrack(up)

    # One request; False when the client connection is finished.
    def _one(self, proxy: FaultProxy, sock: socket.socket, request: _Request) -> bool:
        fault = proxy._match(request.method, request.path)
        proxy._record(request, fault)
        if fault is not None and fault.before is not None:
            fault.before()
        if fault is None:
            response = self._forward(proxy, request, None)
            return self._relay(sock, response)
        kind = fault.kind
        if kind == "reset_before":
            self._drain(request)
            _reset(sock)
            return False
        if kind == "status":
            self._drain(request)
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            body = json.dumps({"errors": [f"injected {fault.status}"]}).encode()
            return self._relay(sock, _make(fault.status, body, extra))
        if kind == "malformed":
            self._drain(request)
            return self._relay(sock, _make(200, MALFORMED_BODY))
        if kind == "cut":
            self._forward(proxy, request, fault)
            _reset(sock)
            return False
        response = self._forward(proxy, request, fault)
        if kind == "cut_answer":
            keep = max(0, min(fault.after_bytes, len(response.body) - 1))
            with contextlib.suppress(OSError):
                sock.sendall(response.head + response.body[:keep])
                sock.shutdown(socket.SHUT_WR)
            return False
        if kind == "reset_after":
            _reset(sock)
            return False
        if kind == "stall":
            # Hold the answer back until the client gives up (or the stall ends).
            deadline = time.monotonic() + fault.seconds
            sock.settimeout(0.05)
            while time.monotonic() < deadline and not proxy._stopping.is_set():
                try:
                    if sock.recv(1) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            _reset(sock)
            return False
        if kind == "malformed_after":
            return self._relay(sock, _make(200, MALFORMED_BODY))
        return self._relay(sock, response)  # slow

    @staticmethod
    def _drain(request: _Request) -> None:
        left = request.length
        while left > 0:
            chunk = request.reader.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)

    def _forward(self, proxy: FaultProxy, request: _Request, fault: Fault | None) -> _Response:
        if not proxy.upstream:
            raise OSError("no upstream")
        host, port = proxy.upstream
        up = socket.create_connection((host, port), timeout=30)
        proxy._track(up)
        with proxy._lock:
            proxy._in_flight += 1
        try:
            up.sendall(request.head_bytes())
            left = request.length
            limit = None
            if fault is not None and fault.kind == "cut":
                # Always short of the whole body: a "cut" that let every byte through would
                # be a reset after forwarding, with the registry finishing on its own time.
                limit = max(0, min(fault.after_bytes, request.length - 1))
            sent = 0
            while left > 0:
                want = min(CHUNK, left)
                if fault is not None and fault.kind == "slow":
                    want = min(want, max(1, fault.rate // 20))
                if limit is not None:
                    want = min(want, limit - sent)
                    if want <= 0:
                        _reset(up)  # the upstream sees a short body
                        return _Response(0, b"", b"")
                chunk = request.reader.read(want)
                if not chunk:
                    break
                up.sendall(chunk)
                sent += len(chunk)
                left -= len(chunk)
                if fault is not None and fault.kind == "slow":
                    proxy.slow_started.set()
                    if proxy._stopping.wait(len(chunk) / fault.rate):
                        break
            if limit is not None:
                _reset(up)
                return _Response(0, b"", b"")
            return self._read_response(proxy, up)
        finally:
            with contextlib.suppress(OSError):
                up.close()
            proxy._untrack(up)
            with proxy._lock:
                proxy._in_flight -= 1

    @staticmethod
    def _read_response(proxy: FaultProxy, up: socket.socket) -> _Response:
        reader = up.makefile("rb")
        try:
            status_line = reader.readline(65537)
            parts = status_line.split(b" ", 2)
            status = int(parts[1]) if len(parts) >= 2 else 502
            lines = [status_line.rstrip(b"\r\n")]
            length = 0
            while True:
                raw = reader.readline(65537)
                if raw in (b"\r\n", b"\n", b""):
                    break
                name, _, value = raw.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                if name.strip().lower() in (b"connection", b"keep-alive"):
                    continue
                if name.strip().lower().decode("latin-1") in proxy.hide_headers:
                    continue
                lines.append(raw.rstrip(b"\r\n"))
            body = reader.read(length) if length else b""
        finally:
            reader.close()
        proxy._scrape(body)
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        return _Response(status, head, body)

    @staticmethod
    def _relay(sock: socket.socket, response: _Response) -> bool:
        if not response.head:
            _reset(sock)
            return False
        sock.sendall(response.head + response.body)
        return True


def _make(status: int, body: bytes, extra: dict[str, str] | None = None) -> _Response:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Injected')}"]
    lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(body)}")
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    return _Response(status, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body)


_REASONS = {
    200: "OK",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    proxy: FaultProxy


class FaultProxy:
    """The proxy; a context manager that stops it (and every connection) on exit."""

    def __init__(self, upstream: str | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.upload_paths: set[str] = set()
        self.hide_headers: set[str] = set()
        self.slow_started = threading.Event()
        self.upstream: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._in_flight = 0  # requests forwarded whose upstream answer has not come yet
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        if upstream:
            self.set_upstream(upstream)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def set_upstream(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        self.upstream = (parts.hostname, parts.port)

    # -- rules ----------------------------------------------------------------------------

    def add(
        self,
        method: str,
        path: str,
        fault: Fault,
        occurrences: frozenset[int] | set[int] | None = frozenset({1}),
    ) -> Rule:
        rule = Rule(method, path, fault, None if occurrences is None else frozenset(occurrences))
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and the record of requests (not the scraped upload paths)."""
        with self._lock:
            self.rules.clear()
            self.seen.clear()
        self.slow_started.clear()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every forwarded request has its upstream answer: nothing is still
        running on the registry because of us. False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    return True
            time.sleep(0.01)
        return False

    def _match(self, method: str, path: str) -> Fault | None:
        chosen = None
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                fires = rule.occurrences is None or rule.seen in rule.occurrences
                if fires and chosen is None:
                    rule.fired += 1
                    chosen = rule.fault
        return chosen

    def _record(self, request: _Request, fault: Fault | None) -> None:
        with self._lock:
            self.seen.append(
                Seen(
                    request.method,
                    request.target,
                    None if fault is None else str(fault),
                    dict(request.headers),
                )
            )

    def _record_connect(self, target: str) -> None:
        with self._lock:
            self.seen.append(Seen("CONNECT", target, None))

    def _scrape(self, body: bytes) -> None:
        # Upload URLs are credentials: remember every one handed out, for the leak checks.
        for match in re.finditer(rb'"upload_path"\s*:\s*"([^"]+)"', body):
            with self._lock:
                self.upload_paths.add(match.group(1).decode("utf-8", "replace"))

    # -- lifecycle ------------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
