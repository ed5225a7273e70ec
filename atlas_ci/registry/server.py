"""HTTP side of the registry: routing, authentication, streaming and the access log.

One thread per connection (:class:`RegistryServer`, at most ``Config.max_connections``; past
that a 503, see :mod:`.connections`), HTTP/1.1 with keep-alive. Every response carries
``Content-Length``; a response sent before the request body was read closes the connection,
and so does any request whose framing is in doubt (:mod:`.framing`). Storage is reached only
through :class:`~atlas_ci.registry.storage.Storage`.

Each request goes through :meth:`RegistryHandler.handle_one_request`: parse, resolve a
:class:`Route`, identify the token's holder (:mod:`.identity`), ask :mod:`.policy` whether it may
do the route's operation on the route's namespace, then run the route's method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Literal, cast

from atlas_ci import __version__
from atlas_ci.registry import framing, policy, ranges, vagrant, wire
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.connections import DeadlineIO, HeaderTimeout, Refuser, refusal
from atlas_ci.registry.identity import (
    ANONYMOUS,
    Identity,
    Unauthenticated,
    grant_holder,
    identify,
    presented_token,
)
from atlas_ci.registry.storage import (
    INT64_MAX,
    Busy,
    Conflict,
    Invalid,
    NotFound,
    OutOfSpace,
    Storage,
    Upload,
    Version,
)

CHUNK_SIZE = 1 << 20
"""Bytes per read when streaming a file in or out: memory stays constant whatever the size."""
MAX_JSON_BODY = 1 << 20
DRAIN_SMALL_BODY = 64 << 10
"""An unread request body up to this size is discarded so the connection can stay open."""
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 << 20
UNREAD_BODY = INT64_MAX
"""``body_left`` of a request whose body is of unknown length: linger, then close."""
EXTENSIONS = "idempotency-key"
"""Sent as ``X-Atlas-Extensions`` on every answer: what this registry adds to the Atlas API."""

log = logging.getLogger("atlas_ci.registry")

_AUTH_REQUIRED = "authentication required: pass a token (X-Atlas-Token or Authorization: Bearer)"

_DIGITS = re.compile(r"[0-9]+")
_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


@dataclasses.dataclass(frozen=True)
class Config:
    """What the server needs besides storage."""

    tokens: tuple[str, ...]
    """Administrator tokens: every namespace, read and write."""
    public_url: str | None = None
    """Base of ``upload_path``; None: ``http://`` + the Host the client addressed."""
    timeout: float = 60.0
    """Seconds a socket read may wait (idle keep-alive, a stalled upload)."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (a new connection's accept) to the end of its
    headers."""
    max_connections: int = 128
    """Connections served at once; one more is answered 503 and closed."""


@dataclasses.dataclass(frozen=True)
class Route:
    """A resolved request: which operation and the path's parameters, decoded."""

    name: str
    params: Mapping[str, str]
    query: str

    @property
    def operation(self) -> policy.Operation | None:
        """What the route does to the artifact it names, for the policy (None: no artifact)."""
        return _OPERATIONS.get(self.name)


# (path template, method -> operation). "{x}" captures one decoded segment.
_ROUTES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("api", "v1", "authenticate"), {"GET": "authenticate"}),
    (("api", "v1", "artifacts"), {"POST": "create_artifact"}),
    (("api", "v1", "artifacts", "{user}", "{name}"), {"GET": "get_artifact"}),
    (("api", "v1", "artifacts", "{user}", "{name}", "{type}"), {"POST": "create_version"}),
    (("api", "v1", "artifacts", "{user}", "{name}", "{type}", "search"), {"GET": "search"}),
    (("api", "v1", "artifacts", "{user}", "{name}", "{type}", "file"), {"GET": "latest_file"}),
    (
        ("api", "v1", "artifacts", "{user}", "{name}", "{type}", "{version}", "file"),
        {"GET": "version_file"},
    ),
    (("binstore", "{secret}"), {"PUT": "upload"}),
    # Vagrant's box catalog; after every literal route ("api", "binstore" are reserved names).
    (("{user}", "{name}"), {"GET": "box_catalog"}),
)
_OPERATIONS: dict[str, policy.Operation] = {
    "get_artifact": "read",
    "search": "read",
    "latest_file": "read",
    "version_file": "read",
    "box_catalog": "read",
    "create_artifact": "write",
    "create_version": "write",
}


class HTTPError(Exception):
    """Answer with ``status`` and ``{"errors": [...]}``."""

    def __init__(self, status: int, *errors: str, headers: Mapping[str, str] | None = None):
        super().__init__(", ".join(errors))
        self.status = status
        self.errors = errors
        self.headers = dict(headers or {})


class ClientGone(Exception):
    """The client closed the connection or stopped sending mid-request."""


def split_target(target: str) -> tuple[list[str], str]:
    """The raw (still escaped) non-empty path segments and the query of a request target."""
    if target.startswith(("http://", "https://")):  # absolute-form, as sent to a proxy
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return [segment for segment in path.split("/") if segment], query


def resolve(method: str, raw_segments: list[str], query: str) -> Route:
    """Match a request to a route; :class:`HTTPError` 404 or 405 when none fits."""
    try:
        segments = [urllib.parse.unquote(s, errors="strict") for s in raw_segments]
    except UnicodeDecodeError:
        raise HTTPError(400, "the path is not valid UTF-8 once unescaped") from None
    lookup = "GET" if method == "HEAD" else method
    for template, methods in _ROUTES:
        if len(template) != len(segments):
            continue
        params: dict[str, str] = {}
        for pattern, segment in zip(template, segments, strict=True):
            if pattern.startswith("{"):
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                break
        else:
            if lookup not in methods:
                allowed = sorted(set(methods) | ({"HEAD"} if "GET" in methods else set()))
                raise HTTPError(
                    405,
                    f"{method} is not allowed here; use {', '.join(allowed)}",
                    headers={"Allow": ", ".join(allowed)},
                )
            return Route(methods[lookup], params, query)
    raise HTTPError(404, f"no such endpoint: {method} /{'/'.join(raw_segments)}")


def loggable_target(raw_segments: list[str], query: str) -> str:
    """The request target for the access log: printable, one line, upload secrets cut."""
    for index, segment in enumerate(raw_segments):
        if urllib.parse.unquote(segment).lower() == "binstore":
            # Everything after /binstore/ is the credential; its query could be too.
            return "/" + "/".join([*raw_segments[: index + 1], "<redacted>"])
    target = "/" + "/".join(raw_segments)
    if query:
        target += "?" + _loggable_query(query)
    return _printable(target)


_LOGGED_PARAMS = re.compile(r"version|build|include_pending|metadata\.[0-9]+\.(key|value)")


def _loggable_query(query: str) -> str:
    """The query with the value of every parameter this registry does not read cut out: a
    client may send its credential there (Vagrant Cloud's ``access_token``, a signed URL)."""
    pieces = []
    for piece in query.split("&"):
        name, sep, _value = piece.partition("=")
        if sep and not _LOGGED_PARAMS.fullmatch(urllib.parse.unquote_plus(name)):
            piece = f"{name}=<redacted>"
        pieces.append(piece)
    return "&".join(pieces)


def _printable(text: str) -> str:
    return "".join(c if 0x21 <= ord(c) < 0x7F else f"%{ord(c):02X}" for c in text)


class RegistryHandler(BaseHTTPRequestHandler):
    """One connection; :meth:`handle_one_request` runs once per request on it."""

    server: RegistryServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client's
    # delayed ACK holds the body back ~40 ms on every response.
    disable_nagle_algorithm = True
    server_version = f"atlas-ci-registry/{__version__}"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.accepted = time.monotonic()
        self.requests_seen = 0
        self.header_lines: list[bytes] = []
        # Reads go through DeadlineIO, so the request line and headers have a deadline.
        self.rfile.close()
        self.stream = DeadlineIO(self.connection, self.server.config.timeout)
        self.reader = io.BufferedReader(self.stream)
        self.rfile = self.reader

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
        self.identity = ANONYMOUS

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
        self.stream.deadline = self.accepted + self.server.config.header_timeout if first else None
        try:
            arrived = bool(self.reader.peek(1))
        except OSError:  # TimeoutError and HeaderTimeout included: nothing came
            return False
        if not first:
            self.stream.deadline = time.monotonic() + self.server.config.header_timeout
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
        raw_segments, query = split_target(self.path)
        self.log_target = loggable_target(raw_segments, query)
        try:
            self._check_framing()
            try:
                route = resolve(self.command, raw_segments, query)
            except HTTPError:
                if raw_segments[:1] == ["api"] and self._identify().anonymous:
                    # No token, no hint at which endpoints exist.
                    raise HTTPError(401, _AUTH_REQUIRED) from None
                raise
            if route.name == "upload":  # the upload URL is its own credential
                self._authorize_upload(route)
            else:
                self.identity = self._identify()
                self._authorize(route)
            getattr(self, "do_route_" + route.name)(route)
        except HTTPError as exc:
            self.send_json(exc.status, {"errors": list(exc.errors)}, exc.headers)
        except wire.BadRequest as exc:
            self.send_json(exc.status, {"errors": [str(exc)]})
        except OutOfSpace:
            self._out_of_space()
        except Busy as exc:
            self.send_json(503, {"errors": [str(exc)]}, {"Retry-After": "1"})
        except (TimeoutError, ClientGone, ConnectionError):
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                self._internal_error()
            else:
                self._out_of_space()
        except Exception:
            self._internal_error()

    def _out_of_space(self) -> None:
        log.error("out of disk space on %s %s", self.command, self.log_target)
        self.note = "out of disk space"
        if self.headers_sent:
            self.close_connection = True
        else:
            self.send_json(507, {"errors": ["the registry is out of disk space; retry later"]})

    def _internal_error(self) -> None:
        log.exception("internal error on %s %s", self.command, self.log_target)
        self.note = "internal error"
        if self.headers_sent:
            self.close_connection = True
        else:
            self.send_json(500, {"errors": ["internal server error; see the server log"]})

    def _check_framing(self) -> None:
        """One request, one response: a request not framed beyond doubt is answered, its
        connection closed, and nothing after it on that connection read as a request."""
        try:
            framing.check_request_line(self.raw_requestline, self.request_version, self.path)
            framing.check_header_lines(self.header_lines)
            length = framing.body_length(self.headers)
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

    # -- identity and access ---------------------------------------------------------------

    def _identify(self) -> Identity:
        try:
            # Each header once: a proxy in front could act on the other copy.
            return identify(
                presented_token(
                    self._single_header("X-Atlas-Token"), self._single_header("Authorization")
                ),
                self.server.config.tokens,
                self.server.accounts,
            )
        except Unauthenticated as exc:
            raise HTTPError(401, str(exc)) from None

    def _decide(self, operation: policy.Operation, user: str, name: str | None) -> policy.Decision:
        identity = self.identity
        if identity.admin:
            return policy.ALLOW  # no lookups for the administrator
        accounts = self.server.accounts
        visibility = (
            accounts.visibility(user, name)
            if operation == "read" and name is not None
            else "private"
        )
        kind = accounts.kind(user) if operation == "write" else None
        return policy.decide(identity, operation, policy.Namespace(user, kind), visibility)

    def _authorize(self, route: Route) -> None:
        """Raise the policy's refusal of ``route`` (before any of its work is done)."""
        if route.name == "authenticate" and self.identity.anonymous:
            raise HTTPError(401, _AUTH_REQUIRED)
        operation = route.operation
        if operation is None:
            return
        user, name = route.params.get("user"), route.params.get("name")
        if user is None:  # create_artifact: the namespace is in the body, see authorize_write
            decision = policy.decide(self.identity, operation, None)
        else:
            decision = self._decide(operation, user, name)
        self._refuse_unless(decision, f"artifact {user}/{name} not found")

    def _authorize_upload(self, route: Route) -> None:
        """An upload URL carries the write access of the token it was handed to, as that
        access is now: revoking the token, or the membership, ends the URL too."""
        storage = self.server.storage
        try:
            version = storage.version_for_secret(route.params["secret"])
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        refused = "this upload URL no longer carries write access: "
        try:
            self.identity = grant_holder(storage.upload_grantee(version), self.server.accounts)
        except Unauthenticated as exc:
            raise HTTPError(403, refused + str(exc)) from None
        decision = self._decide("write", version.user, None)
        if not decision.allowed:
            raise HTTPError(403, refused + decision.reason)

    def _resumable(self, found: list[Version]) -> list[Version]:
        """The pending versions of ``found`` (one search's: all in one namespace) whose upload
        URL the identity may be handed (see :func:`policy.decide`); the namespace is looked up
        once, not once a version."""
        pending = [v for v in found if v.state == "pending"]
        if self.identity.admin or not pending:
            return pending  # no lookups for the administrator
        user = pending[0].user
        namespace = policy.Namespace(user, self.server.accounts.kind(user))
        storage = self.server.storage
        return [
            v
            for v in pending
            if policy.decide(
                self.identity, "resume", namespace, grantee=storage.upload_grantee(v)
            ).allowed
        ]

    def authorize_write(self, user: str) -> None:
        """For a route whose namespace is in its body: may the identity write into ``user``?"""
        self._refuse_unless(self._decide("write", user, None), "")

    @staticmethod
    def _refuse_unless(decision: policy.Decision, not_found: str) -> None:
        if not decision.allowed:
            reason = not_found if decision.status == 404 and not_found else decision.reason
            raise HTTPError(decision.status, reason)

    # -- reading -------------------------------------------------------------------------------

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
            body = json.loads(raw)
        except ValueError:
            raise wire.BadRequest("the body is not valid JSON (UTF-8)") from None
        except RecursionError:
            raise wire.BadRequest("the JSON body is nested too deeply") from None
        wire.check_text(body)
        return body

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
        self.send_header("X-Atlas-Extensions", EXTENSIONS)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if closing:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        self.headers_sent = True

    def send_json(
        self, status: int, payload: object, headers: Mapping[str, str] | None = None
    ) -> None:
        """A complete JSON response (no body for HEAD)."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_head(status, "application/json", len(body), headers)
        if self.command != "HEAD":
            self.wfile.write(body)
            self.bytes_out += len(body)

    def _send_file(self, path: Path, version: Version) -> None:
        """The file of ``version``, whole or the range asked for (:mod:`.ranges` decides)."""
        try:
            blob = path.open("rb", buffering=0)
        except FileNotFoundError:
            log.error("the file of %s is missing from %s", version.slug, path)
            raise HTTPError(500, f"the file of {version.slug} is missing from storage") from None
        with blob:
            size = blob.seek(0, 2)
            if version.size is not None and size != version.size:
                log.error(
                    "the file of %s is %d bytes, not %d: damaged", version.slug, size, version.size
                )
                raise HTTPError(
                    500, f"the file of {version.slug} is damaged in storage (wrong size)"
                )
            etag = f'"{version.sha256}"' if version.sha256 else None
            fields = {name: self.headers.get_all(name) or [] for name in ranges.FIELDS}
            answer = ranges.decide(self.command, size, etag, fields)
            if answer.status in (412, 416):
                raise HTTPError(answer.status, answer.reason, headers=answer.headers)
            if not answer.has_file_body:  # 304: headers only, no Content-Length
                self.send_head(answer.status, None, None, answer.headers)
                return
            self.send_head(answer.status, "application/octet-stream", answer.length, answer.headers)
            if self.command == "HEAD":
                return
            self.wfile.flush()
            if answer.length:  # socket.sendfile refuses a count of 0
                self._send_blob(blob, answer.offset, answer.length)

    def _send_blob(self, blob: BinaryIO, offset: int, count: int) -> None:
        """The kernel copies page cache to socket (sendfile); the access log counts what went.

        Python's ``socket.sendfile`` falls back to read/send where it cannot; the socket's
        timeout still bounds each wait. A client that leaves half way is raised to the caller.
        """
        try:
            sent = self.connection.sendfile(blob, offset, count)
        except OSError:
            self.bytes_out += blob.tell() - offset  # sendfile moves the file position as it goes
            raise
        self.bytes_out += sent
        if sent < count:
            self.close_connection = True  # shorter than announced: the client must see

    # -- access log ----------------------------------------------------------------------------

    def _log(self, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        line = (
            f"{self.client_address[0]} {_printable(self.command or '-')} {self.log_target} "
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

    # -- routes --------------------------------------------------------------------------------

    def _public_base(self) -> str:
        if self.server.config.public_url:
            return self.server.config.public_url.rstrip("/")
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            host = self.server.host_port
        return f"http://{host}"

    def _artifact(self, route: Route) -> None:
        user, name = route.params["user"], route.params["name"]
        if self.server.storage.get_artifact(user, name) is None:
            raise HTTPError(404, f"artifact {user}/{name} not found")

    def do_route_authenticate(self, route: Route) -> None:
        identity = self.identity
        user = {
            "username": identity.name,
            "authenticated": True,
            "admin": identity.admin,
            "read_only": identity.read_only,
        }
        self.send_json(200, {"user": user})

    def do_route_get_artifact(self, route: Route) -> None:
        user, name = route.params["user"], route.params["name"]
        artifact = self.server.storage.get_artifact(user, name)
        if artifact is None:
            raise HTTPError(404, f"artifact {user}/{name} not found")
        self.send_json(200, wire.artifact_json(artifact))

    def do_route_create_artifact(self, route: Route) -> None:
        new = wire.parse_new_artifact(self.read_json())
        self.authorize_write(new.username)
        try:
            artifact = self.server.storage.create_artifact(new.username, new.name)
        except (Invalid, Conflict) as exc:
            raise HTTPError(422, str(exc)) from None
        self.send_json(201, wire.artifact_json(artifact))

    def do_route_create_version(self, route: Route) -> None:
        key = wire.parse_idempotency_key(self._single_header("Idempotency-Key"))
        new = wire.parse_new_version(self.read_json())
        secret = secrets.token_urlsafe(32) if new.file else None
        try:
            version = self.server.storage.create_version(
                route.params["user"],
                route.params["name"],
                route.params["type"],
                artifact_id=new.id,
                build_id=new.build_id,
                compile_id=new.compile_id,
                metadata=new.metadata,
                file=new.file,
                upload_secret=secret,
                idempotency_key=key,
                grantee=self.identity.grantee,
            )
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except Invalid as exc:
            raise HTTPError(422, str(exc)) from None
        if key is not None:
            # Perhaps the version an earlier request with this key created: its own secret,
            # while it waits for its file; none once the file is there.
            secret = self.server.storage.pending_upload_secret(version)
        upload_path = None if secret is None else f"{self._public_base()}/binstore/{secret}"
        self.send_json(201, wire.version_json(version, upload_path))

    def _single_header(self, name: str) -> str | None:
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise HTTPError(400, f"send the {name} header once")
        return values[0] if values else None

    def do_route_search(self, route: Route) -> None:
        search = wire.parse_search(route.query)
        self._artifact(route)
        storage = self.server.storage
        found = storage.search(
            route.params["user"], route.params["name"], route.params["type"], search
        )
        if not search.include_pending:
            self.send_json(200, {"versions": [wire.version_json(v) for v in found]})
            return
        # The token a pending upload was handed to may finish it: its upload_path comes back
        # (the uploader adopts a version its failed POST created this way). Nobody else,
        # a reader or another writer, sees the URL.
        resumable = {v.pk for v in self._resumable(found)}
        versions = []
        for v in found:
            secret = storage.pending_upload_secret(v) if v.pk in resumable else None
            upload_path = None if secret is None else f"{self._public_base()}/binstore/{secret}"
            versions.append({**wire.version_json(v, upload_path), "state": v.state})
        self.send_json(200, {"versions": versions, "pending_listed": True})

    def do_route_latest_file(self, route: Route) -> None:
        self._artifact(route)
        user, name, type_ = route.params["user"], route.params["name"], route.params["type"]
        version = self.server.storage.latest_with_file(user, name, type_)
        if version is None:
            raise HTTPError(404, f"{user}/{name}/{type_} has no version with an uploaded file")
        self._send_file(self.server.storage.blob_path(version), version)

    def do_route_version_file(self, route: Route) -> None:
        self._artifact(route)
        user, name, type_ = route.params["user"], route.params["name"], route.params["type"]
        raw = route.params["version"]
        version = (
            self.server.storage.get_version(user, name, type_, int(raw))
            if _DIGITS.fullmatch(raw) and len(raw) < 19
            else None
        )
        if version is None or not version.file or version.state != "ready":
            raise HTTPError(404, f"{user}/{name}/{type_}/{raw} has no uploaded file")
        self._send_file(self.server.storage.blob_path(version), version)

    def do_route_box_catalog(self, route: Route) -> None:
        self._artifact(route)
        user, name = route.params["user"], route.params["name"]
        rows = self.server.storage.ready_files(user, name, vagrant.BOX_TYPE, vagrant.CATALOG_LIMIT)
        self.send_json(200, vagrant.catalog_json(user, name, rows, self._public_base()))

    def do_route_upload(self, route: Route) -> None:
        if self.content_length is None:
            raise HTTPError(411, "Content-Length is required: PUT the file with its size")
        try:
            upload = self.server.storage.begin_upload(route.params["secret"])
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        try:
            self._receive(upload, self.content_length)
            version = self.server.storage.finish_upload(upload)
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HTTPError(507, "the registry is out of disk space") from None
            if exc.errno == errno.EFBIG:
                raise HTTPError(413, "the file is larger than the registry can store") from None
            raise
        finally:
            upload.abort()
        self.send_json(
            200,
            {"slug": version.slug, "size": version.size, "sha256": version.sha256},
        )

    def _receive(self, upload: Upload, length: int) -> None:
        """Stream ``length`` body bytes into ``upload``; a short body answers 400 and closes."""
        upload.reserve(length)  # a full disk answers 507 before the client sends the body
        self._body_wanted()

        def read_into(view: memoryview) -> int:
            try:
                count = self.rfile.readinto1(view)
            except (TimeoutError, ConnectionError):
                return 0
            self.body_left -= count
            return int(count)

        upload.receive(read_into, length)
        if upload.size < length:
            self.note = f"upload incomplete: {upload.size} of {length} bytes"
            self.close_connection = True
            raise HTTPError(
                400,
                f"upload incomplete: received {upload.size} of {length} bytes; "
                "PUT the whole file again to the same upload_path",
            )


Lifecycle = Literal["new", "busy", "idle"]


class RegistryServer(ThreadingHTTPServer):
    """A thread per connection, up to ``config.max_connections``; knows which connections
    are mid-request, to drain on stop."""

    daemon_threads = True
    block_on_close = False  # stop() waits itself, with a bound
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        storage: Storage,
        config: Config,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.storage = storage
        self.accounts = Accounts(storage)
        self.config = config
        self.draining = False
        self._state: dict[socket.socket, Lifecycle] = {}
        self._changed = threading.Condition()
        self.refuser = Refuser(
            refusal(config.max_connections, retry_after=1), max_held=config.max_connections
        )
        super().__init__(address, RegistryHandler)

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
            full = len(self._state) >= self.config.max_connections
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
