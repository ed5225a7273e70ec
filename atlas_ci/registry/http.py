"""HTTP/1.1 as the registry speaks it: connections, framing, bodies in and answers out, the log.

One thread per connection (:class:`ConnectionServer`, at most ``max_connections``; past that a
503, see :mod:`.connections`), keep-alive. Every response but a 304 (never a body) carries
``Content-Length``; a file answer is whole or a byte range (:mod:`.ranges`); a response sent
before the request body was read closes the connection, and so does any request whose
framing is in doubt (:mod:`.framing`). One access-log line per request, secrets cut by the
subclass's :meth:`HTTPHandler.loggable_target`.

This layer knows nothing of artifacts: a subclass (:class:`.server.RegistryHandler`) answers a
parsed, well-framed request in :meth:`HTTPHandler.respond`, reading the body with
:meth:`~HTTPHandler.read_json` or :meth:`~HTTPHandler.stream_body` and answering with
:meth:`~HTTPHandler.send_answer`; an :class:`HTTPError` raised there becomes a JSON error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO, Literal, cast

from atlas_ci import __version__
from atlas_ci.registry import framing, ranges, sendfile
from atlas_ci.registry.connections import DeadlineIO, HeaderTimeout, Refuser, refusal

CHUNK_SIZE = 1 << 20
"""Bytes per read when streaming a file in or out: memory stays constant whatever the size."""
MAX_JSON_BODY = 1 << 20
MAX_FORM_BODY = 16 << 10
"""A form a web page posts (sign-in: one token field) is far smaller."""
DRAIN_SMALL_BODY = 64 << 10
"""An unread request body up to this size is discarded so the connection can stay open."""
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 << 20
UNREAD_BODY = 2**63 - 1
"""``body_left`` of a request whose body is of unknown length: linger, then close."""

log = logging.getLogger("atlas_ci.registry")

ReadInto = Callable[[memoryview], int]
BodySink = Callable[[ReadInto, int], int]
"""Takes ``(read_into, length)``, reads up to ``length`` bytes with ``read_into`` (0: the body
ended early), returns how many it took."""


class HTTPError(Exception):
    """Answer with ``status`` and ``{"errors": [...]}``."""

    def __init__(self, status: int, *errors: str, headers: Mapping[str, str] | None = None):
        super().__init__(", ".join(errors))
        self.status = status
        self.errors = errors
        self.headers = dict(headers or {})


class ClientGone(Exception):
    """The client closed the connection or stopped sending mid-request."""


@dataclasses.dataclass(frozen=True)
class JsonAnswer:
    """A complete JSON response."""

    status: int
    payload: object
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FileAnswer:
    """A file of ``size`` bytes, open, closed once sent: whole, or the range the request asks
    for (:meth:`HTTPHandler.send_file` decides, with :mod:`.ranges`)."""

    file: BinaryIO
    size: int
    etag: str | None = None
    """Sent quoted as ``ETag`` (the file's sha256)."""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    content_type: str = "application/octet-stream"
    on_sent: Callable[[], None] | None = None
    """Called once the whole file went out to a GET (a box download is counted so)."""


@dataclasses.dataclass(frozen=True)
class BodyAnswer:
    """A complete response of any other type (a web page, the stylesheet, a redirect)."""

    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


Answer = JsonAnswer | FileAnswer | BodyAnswer


def printable(text: str) -> str:
    """``text`` with every character outside printable ASCII %-escaped: one log-safe word."""
    return "".join(c if 0x21 <= ord(c) < 0x7F else f"%{ord(c):02X}" for c in text)


class HTTPHandler(BaseHTTPRequestHandler):
    """One connection; :meth:`handle_one_request` runs once per request on it."""

    server: ConnectionServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client's
    # delayed ACK holds the body back ~40 ms on every response.
    disable_nagle_algorithm = True
    server_version = f"atlas-ci-registry/{__version__}"
    always_headers: tuple[tuple[str, str], ...] = ()
    """Sent on every answer, after ``Content-Length``."""

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.accepted = time.monotonic()
        self.requests_seen = 0
        self.header_lines: list[bytes] = []
        # Reads go through DeadlineIO, so the request line and headers have a deadline.
        self.rfile.close()
        self.stream = DeadlineIO(self.connection, self.server.read_timeout)
        self.reader = io.BufferedReader(self.stream)
        self.rfile = self.reader

    # -- what a subclass provides ----------------------------------------------------------------

    def respond(self) -> None:
        """Answer the request (parsed, framing checked) with :meth:`send_answer`."""
        raise NotImplementedError

    def error_body(self, *errors: str) -> object:
        """The JSON body of an error answer (a subclass may shape it per API)."""
        return {"errors": list(errors)}

    def loggable_target(self, target: str) -> str:
        """The request target as the access log shows it (a subclass cuts its secrets)."""
        return printable(target)

    # -- the request cycle ---------------------------------------------------------------------

    def _reset(self) -> None:
        self.status: int | None = None
        self.bytes_out = 0
        self.note = ""
        self.body_left = 0
        self.content_length: int | None = None
        self.expect_continue = False
        self.log_target = "<malformed request line>"
        self.headers_sent = False

    def handle_one_request(self) -> None:
        self._reset()
        self.command = ""
        if not self._request_arrives():
            self.close_connection = True
            return
        started = time.monotonic()
        self.server.request_started(self.request)
        try:
            if self._read_head():
                self._handle_parsed()
            if not self.wfile.closed:
                self.wfile.flush()
        except HeaderTimeout:
            self.close_connection = True
            self.note = "headers incomplete after --header-timeout"
            self.request_version = self.protocol_version
            self.stream.deadline = None
            self.body_left = UNREAD_BODY  # the client may still be sending: linger, then close
            with contextlib.suppress(OSError):
                self.send_json(408, {"errors": ["the request headers took too long to arrive"]})
        except (TimeoutError, ClientGone, ConnectionError) as exc:
            self.close_connection = True
            self.note = self.note or f"connection lost: {type(exc).__name__}"
        finally:
            if self.server.request_finished(self.request):
                self.close_connection = True
            self._log(started)

    def _request_arrives(self) -> bool:
        """Wait for a request's first byte; False when the client closed or stayed silent.

        A new connection must send its whole head within ``header_timeout`` of being
        accepted; on a kept-alive one, the idle ``timeout`` applies until a request starts.
        """
        first = self.requests_seen == 0
        self.requests_seen += 1
        self.stream.deadline = self.accepted + self.server.header_timeout if first else None
        try:
            arrived = bool(self.reader.peek(1))
        except OSError:  # TimeoutError and HeaderTimeout included: nothing came
            return False
        if not first:
            self.stream.deadline = time.monotonic() + self.server.header_timeout
        return arrived

    def _read_head(self) -> bool:
        """Read and parse the request line and headers; False when already answered."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = ""
            self.send_error(414)
            return False
        # Keep the raw header lines: the parser drops what it does not understand silently.
        stream_file = self.rfile
        recorder = framing.LineRecorder(stream_file)
        self.rfile = cast(io.BufferedIOBase, recorder)
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = stream_file
            self.stream.deadline = None
        self.header_lines = recorder.lines
        return parsed

    def _handle_parsed(self) -> None:
        self.log_target = self.loggable_target(self.path)
        try:
            self._check_framing()
            self.respond()
        except HTTPError as exc:
            self.send_json(exc.status, self.error_body(*exc.errors), exc.headers)
        except (TimeoutError, ClientGone, ConnectionError):
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                self._internal_error()
            else:
                self.out_of_space()
        except Exception:
            self._internal_error()

    def out_of_space(self) -> None:
        """Log a full disk and answer 507 (or close, when the answer has begun)."""
        log.error("out of disk space on %s %s", self.command, self.log_target)
        self.note = "out of disk space"
        if self.headers_sent:
            self.close_connection = True
        else:
            self.send_json(507, self.error_body("the registry is out of disk space; retry later"))

    def _internal_error(self) -> None:
        log.exception("internal error on %s %s", self.command, self.log_target)
        self.note = "internal error"
        if self.headers_sent:
            self.close_connection = True
        else:
            self.send_json(500, self.error_body("internal server error; see the server log"))

    def _check_framing(self) -> None:
        """One request, one response: a request not framed beyond doubt is answered, its
        connection closed, and nothing after it on that connection read as a request."""
        try:
            framing.check_request_line(self.raw_requestline, self.request_version, self.path)
            framing.check_header_lines(self.header_lines)
            length = framing.body_length(self.headers)
            framing.check_host(self.headers, self.request_version)
        except framing.FramingError as exc:
            self.close_connection = True
            self.body_left = UNREAD_BODY  # linger, so the answer is not reset away
            if self.request_version == "HTTP/0.9":
                self.request_version = self.protocol_version  # answer with a status line
            raise HTTPError(exc.status, str(exc)) from None
        if length is not None:
            self.content_length = length
            self.body_left = length

    def handle_expect_100(self) -> bool:
        # Answer "100 Continue" only when the body is really wanted (see _body_wanted), so a
        # 401/404/409/411 reaches a curl-like client before it sends gigabytes.
        self.expect_continue = True
        return True

    def _body_wanted(self) -> None:
        if self.expect_continue:
            self.expect_continue = False
            self.wfile.write(f"{self.protocol_version} 100 Continue\r\n\r\n".encode("latin-1"))

    # -- reading -------------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """A request header that may be sent once (None when absent); 400 when sent twice."""
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise HTTPError(400, f"send the {name} header once")
        return values[0] if values else None

    def _read_exact(self, size: int) -> bytes:
        self._body_wanted()
        data = self.rfile.read(size)
        self.body_left -= len(data)
        if len(data) < size:
            raise ClientGone
        return data

    def read_json(self) -> object:
        """The request body as JSON (413 over 1 MiB, 422 if it does not parse)."""
        size = self.content_length or 0
        if size > MAX_JSON_BODY:
            raise HTTPError(413, f"the JSON body is larger than {MAX_JSON_BODY} bytes")
        raw = self._read_exact(size)
        try:
            return json.loads(raw)
        except ValueError:
            raise HTTPError(422, "the body is not valid JSON (UTF-8)") from None
        except RecursionError:
            raise HTTPError(422, "the JSON body is nested too deeply") from None

    def read_form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body (413 over 16 KiB, 415 of another type):
        each field's first value."""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HTTPError(415, "send the form as application/x-www-form-urlencoded")
        size = self.content_length or 0
        if size > MAX_FORM_BODY:
            raise HTTPError(413, f"the form is larger than {MAX_FORM_BODY} bytes")
        raw = self._read_exact(size).decode("utf-8", "replace")
        try:
            pairs = urllib.parse.parse_qsl(raw, max_num_fields=32)
        except ValueError:
            raise HTTPError(400, "the form has more than 32 fields") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            fields.setdefault(name, value)
        return fields

    def stream_body(self, sink: BodySink, length: int) -> int:
        """Hand ``length`` body bytes to ``sink`` as they arrive (``100 Continue`` first, if the
        client waits for it); what it took. A body cut short closes the connection."""
        self._body_wanted()

        def read_into(view: memoryview) -> int:
            try:
                count = self.rfile.readinto1(view)
            except (TimeoutError, ConnectionError):
                return 0
            self.body_left -= count
            return int(count)

        taken = sink(read_into, length)
        if taken < length:
            self.close_connection = True
        return taken

    # -- writing -------------------------------------------------------------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # send_response calls this; the one access-log line is written by _log instead.
        self.status = int(code) if isinstance(code, int) or str(code).isdigit() else None

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: the stdlib messages can quote the request line, upload secret and all."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors raised by the stdlib parser, as JSON like every other error."""
        self.close_connection = True
        self.body_left = UNREAD_BODY  # the rest of the head is unread: linger, then close
        self.stream.deadline = None
        if self.request_version == "HTTP/0.9":
            # The parser's default when the request line did not parse; answer with headers.
            self.request_version = self.protocol_version
        if message is None:
            message = self.responses.get(code, ("error", ""))[0]
        self.send_json(code, {"errors": [message]})

    def send_head(
        self,
        status: int,
        content_type: str | None,
        length: int | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Status line and headers (None: no Content-Type, no Content-Length, as for a 304);
        decides whether the connection survives the response."""
        if (
            0 < self.body_left <= DRAIN_SMALL_BODY
            and not self.expect_continue
            and not self.close_connection
        ):
            # Read the rest of a small body so the connection stays usable.
            with contextlib.suppress(ClientGone, TimeoutError, ConnectionError):
                self._read_exact(self.body_left)
        closing = (
            self.close_connection
            or self.body_left > 0
            or self.expect_continue
            or self.server.draining
        )
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in self.always_headers:
            self.send_header(key, value)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if closing:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        self.headers_sent = True

    def send_answer(self, answer: Answer) -> None:
        """Send what a door answered; a file answer's file is closed once sent."""
        if isinstance(answer, JsonAnswer):
            self.send_json(answer.status, answer.payload, answer.headers)
        elif isinstance(answer, BodyAnswer):
            self.send_head(answer.status, answer.content_type, len(answer.body), answer.headers)
            if self.command != "HEAD":
                self.wfile.write(answer.body)
                self.bytes_out += len(answer.body)
        else:
            with answer.file:
                self.send_file(answer)

    def send_json(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        """A complete JSON response (no body for HEAD)."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_head(status, "application/json", len(body), headers)
        if self.command != "HEAD":
            self.wfile.write(body)
            self.bytes_out += len(body)

    def send_file(self, answer: FileAnswer) -> None:
        """A file, whole or the range asked for, or 304/412/416 as :mod:`.ranges` decides (no
        body for HEAD): every file answer goes out here."""
        etag = f'"{answer.etag}"' if answer.etag else None
        fields = {name: self.headers.get_all(name) or [] for name in ranges.FIELDS}
        decided = ranges.decide(self.command, answer.size, etag, fields)
        headers = {**decided.headers, **answer.headers}
        if decided.status in (412, 416):
            self.send_json(decided.status, {"errors": [decided.reason]}, headers)
            return
        if not decided.has_file_body:  # 304: headers only, no Content-Length
            self.send_head(decided.status, None, None, headers)
            return
        self.send_head(decided.status, answer.content_type, decided.length, headers)
        if self.command == "HEAD":
            return
        self.wfile.flush()
        # An empty file: nothing to send. Not close_connection: a client asking to close
        # (HTTP/1.0, a proxy) still got the whole file.
        whole = not decided.length or self._send_blob(answer.file, decided.offset, decided.length)
        if answer.on_sent is not None and decided.status == 200 and whole:
            answer.on_sent()  # the whole file went out (a range is a part, not a download)

    def _send_blob(self, blob: BinaryIO, offset: int, count: int) -> bool:
        """The kernel copies page cache to socket (:mod:`.sendfile`); the access log counts
        what went. The connection's timeout bounds each wait; a client that leaves half way
        is raised to the caller. Whether all ``count`` bytes went."""

        def went(moved: int) -> None:
            self.bytes_out += moved

        if sendfile.send_range(self.connection, blob, offset, count, went) < count:
            self.close_connection = True  # shorter than announced: the client must see
            return False
        return True

    # -- access log ----------------------------------------------------------------------------

    def _log(self, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        line = (
            f"{self.client_address[0]} {printable(self.command or '-')} {self.log_target} "
            f"{self.status if self.status is not None else '-'} {self.bytes_out}B "
            f"{elapsed_ms:.1f}ms"
        )
        if self.note:
            line += f" ({self.note})"
        log.info("%s", line)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if getattr(self, "body_left", 0) > 0:
                self._linger()

    def _linger(self) -> None:
        # Closing with unread bytes makes the kernel send RST, which can destroy the response
        # still in flight to the client; read (and drop) a bounded amount first.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(CHUNK_SIZE)
                if not chunk:
                    break
                drained += len(chunk)


Lifecycle = Literal["new", "busy", "idle"]


class ConnectionServer(ThreadingHTTPServer):
    """A thread per connection, up to ``max_connections``; knows which connections are
    mid-request, to drain on stop."""

    daemon_threads = True
    block_on_close = False  # stop() waits itself, with a bound
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[HTTPHandler],
        *,
        read_timeout: float,
        header_timeout: float,
        max_connections: int,
    ) -> None:
        """``read_timeout``: seconds a socket read may wait (idle keep-alive, a stalled body);
        ``header_timeout``: seconds from a request's first byte (a new connection's accept) to
        the end of its headers."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.read_timeout = read_timeout
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.draining = False
        self._state: dict[socket.socket, Lifecycle] = {}
        self._changed = threading.Condition()
        self.refuser = Refuser(refusal(max_connections, retry_after=1), max_held=max_connections)
        super().__init__(address, handler)

    @property
    def host_port(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        """Where the server listens, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host_port}"

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._changed:
            full = len(self._state) >= self.max_connections
            if not full:
                self._state[request] = "new"
        if full:
            # Answered on the accept thread and one helper: no thread per refused connection.
            host = client_address[0] if isinstance(client_address, tuple) else client_address
            self.refuser.refuse(request, str(host))
            return
        super().process_request(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.refuser.close()

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        try:
            super().shutdown_request(request)
        finally:
            with self._changed:
                self._state.pop(request, None)
                self._changed.notify_all()

    def handle_error(self, request: object, client_address: object) -> None:
        # Instead of socketserver's multi-line print: a bug, logged once with its traceback.
        log.exception("unexpected error on a connection from %s", client_address)

    def request_started(self, request: socket.socket) -> None:
        with self._changed:
            self._state[request] = "busy"

    def request_finished(self, request: socket.socket) -> bool:
        """Mark the connection idle; True when it must close because the server is stopping."""
        with self._changed:
            self._state[request] = "idle"
            self._changed.notify_all()
            return self.draining

    def drain(self, timeout: float) -> int:
        """Close idle keep-alive connections and wait up to ``timeout`` s for the busy ones.

        Returns how many connections were still open when the wait ended.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            self.draining = True
            while self._state:
                for request, state in self._state.items():
                    if state == "idle":
                        # Wakes the thread blocked reading the next request line with EOF.
                        with contextlib.suppress(OSError):
                            request.shutdown(socket.SHUT_RD)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))
            return len(self._state)
