"""The file PUT to ``upload_path``: streamed, ``Content-Length`` framed, hashed on the way.

Two ways to send, one result:

* ``http://`` with no proxy, no credentials and requests' own adapter: the request head is
  written on a plain socket and the body goes with ``os.sendfile`` (no copy through
  Python), while a thread hashes the same file with SHA-256. The two overlap on two cores.
* anything else (``https://``, a proxy, a mounted or mocked adapter): through the caller's
  ``requests.Session``, with a body object that hands urllib3 1 MiB slices of an mmap
  buffer (page aligned: reads into a misaligned buffer are several times slower), so
  requests frames it with ``Content-Length`` and never chunks it. The hash runs in a
  thread here too.

Both read the file's one descriptor (``pread`` and ``sendfile`` at explicit offsets) from
offset 0 on every call, so a retry only has to call again. The file is never read whole.
The body never runs more than :data:`AHEAD` bytes past the hash, and its last byte waits
until the hash is done and ``fstat`` shows the file unchanged since it was opened (size,
mtime); the file is checked again once the server has answered. So the sha256 returned is
that of the bytes the server read, or the call raises
:class:`~atlas_ci.sourcefile.FileChanged` (``delivered`` when the whole body had gone).

Time. The body must make progress within the read timeout (a multi-GB file may take
longer than ``--timeout`` in all, and should); from its last byte on (or from the server's
early answer) the whole answer must arrive within the read timeout, ``100 Continue`` lines
and a drip of one byte a second included (:class:`atlas_ci.transport.Deadline`).

Errors. ``put_file`` raises only these, and none of their messages holds the URL's path or
query string (a presigned URL carries a credential there):

* :class:`atlas_ci.errors.TransportError` - no connection (``sent`` False), or refused,
  reset, closed without an answer, timed out, TLS failure (``tls``), bad response;
* :class:`atlas_ci.errors.RegistryRefused` - the URL is not an absolute http(s) URL;
* :class:`atlas_ci.errors.InputFileError` - the file cannot be opened or is not a regular
  file; its subclass :class:`~atlas_ci.sourcefile.FileChanged` - its size is not ``size``,
  or it changed during the upload.

A status that is not 2xx (3xx included: redirects are never followed on this write) is
not an error here: it comes back in :class:`PutResponse` for the caller to judge.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import mmap
import os
import select
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
import requests.adapters
import requests.utils
from requests.structures import CaseInsensitiveDict

from atlas_ci import USER_AGENT
from atlas_ci.answers import printable
from atlas_ci.digest import CHUNK, FileDigest, pread_into
from atlas_ci.errors import RegistryRefused, TransportError
from atlas_ci.sourcefile import FileChanged, SourceFile, open_source
from atlas_ci.transport import SEND_ERRORS, Deadline, describe, send_failure, timed_out

__all__ = ["ProgressFn", "PutOutcome", "PutResponse", "put_file"]

ProgressFn = Callable[[int], None]
"""Called with the cumulative number of body bytes sent, every 4 MiB or so and at the end."""

PROGRESS_EVERY = 4 << 20  # cheap: the Progress reporter decides by time what to print
BODY_KEEP = 64 << 10
_SENDFILE_MAX = 1 << 30  # Linux moves at most ~2 GiB per sendfile call anyway


@dataclass(frozen=True)
class PutResponse:
    """The server's answer to the PUT."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    """The start of the response body, at most 64 KiB."""


@dataclass(frozen=True)
class PutOutcome:
    """What was sent and what came back."""

    response: PutResponse
    sha256: str | None
    """Hex SHA-256 of the ``size`` bytes sent; ``None`` when hashing was off or the
    server answered before the whole body was sent."""
    size: int
    """Body bytes actually sent (``size`` unless the server answered early)."""


def put_file(
    url: str,
    file: Path | SourceFile,
    size: int,
    *,
    session: requests.Session,
    verify: bool | str,
    timeout: tuple[float, float],
    hash_file: bool = True,
    progress: ProgressFn | None = None,
    proxies: Mapping[str, str] | None = None,
    digest: FileDigest | None = None,
) -> PutOutcome:
    """PUT the ``size`` bytes of ``file`` to ``url`` with ``Content-Length: size``.

    ``file`` is read only through its descriptor (a path is opened once, here). No token,
    no ``Content-Type``, no chunking, no redirect followed. The URL's query string is
    kept. With ``hash_file``, the SHA-256 is computed alongside the send, or taken from
    ``digest``, a :class:`~atlas_ci.digest.FileDigest` of the same descriptor the caller
    started earlier (it is waited for, never cancelled, and can serve retries). The body
    never runs more than :data:`AHEAD` bytes past the hash, and its last byte goes only once
    the hash is done and the file is unchanged since it was opened (module docstring).
    See the module docstring for the exceptions raised.
    """
    target = _Target.parse(url)
    env = session.merge_environment_settings(target.url, dict(proxies or {}), False, verify, None)
    proxy = requests.utils.select_proxy(target.url, env["proxies"])
    if digest is not None and digest.size != size:
        raise ValueError(f"the digest covers {digest.size} bytes, not {size}")
    with contextlib.ExitStack() as stack:
        source = file if isinstance(file, SourceFile) else stack.enter_context(open_source(file))
        if source.size != size:
            raise FileChanged(
                f"file {source.shown} is {source.size} bytes, not the {size} bytes measured",
                _SENT_HINT,
                path=str(source.path),
            )
        source.check("before the upload", hint=_SENT_HINT)
        own = FileDigest(source.fd, size, str(source.path)) if hash_file and not digest else None
        hasher = own or (digest if hash_file else None)
        guard = _Guard(source, size, hasher)
        try:
            if _sendfile_usable(target, session, proxy):
                response, sent = _put_sendfile(target, guard, timeout, progress)
            else:
                response, sent = _put_session(
                    target, guard, session, timeout, progress, env["verify"], proxy
                )
        except BaseException:
            if own is not None:
                own.cancel()
            raise
        if own is not None and sent < size:
            own.cancel()  # the digest only stands for a body that went out whole
        sha256 = hasher.result() if hasher is not None and sent == size else None
        if sent == size:
            # The server has read every byte now: had the file changed before, the bytes
            # it read may not be those hashed.
            source.check("while it was uploaded", hint=_SENT_HINT, delivered=True)
    return PutOutcome(response=response, sha256=sha256, size=sent)


AHEAD = 64 << 20
"""How far the body may run past the hash (a sender faster than the hash waits for it)."""
RESUME = 32 << 20
_SENT_HINT = "make sure nothing writes the artifact while it is uploaded"


class _Guard:
    """The file to send and what keeps its bytes equal to the ones hashed.

    The body may go :data:`AHEAD` bytes past the hash, and no further; its last byte waits
    until the hash is done and the file is checked unchanged since it was opened, so a
    registry never receives a whole body that differs from what was hashed (it keeps no
    partial one). Held up, it goes on once the hash has moved :data:`RESUME` further.
    """

    def __init__(self, source: SourceFile, size: int, digest: FileDigest | None) -> None:
        self.source = source
        self.size = size
        self._digest = digest

    def until(self, offset: int) -> int:
        """How far the body may go from ``offset`` now; waits until it may go further."""
        last = self.size - 1
        if offset >= last:
            if self._digest is not None:
                self._digest.result()  # raises what the hash met
            self.source.check("during the upload", hint=_SENT_HINT)
            return self.size
        if self._digest is None:
            return last
        # Once held up, go on only when the hash has moved RESUME further: fewer wake-ups.
        hashed = self._digest.wait_hashed(offset + 1 - AHEAD + RESUME)
        if hashed + AHEAD <= offset:  # the hash ended short of it
            self._digest.result()  # raises what it met
        return min(last, hashed + AHEAD)

    def shrank(self) -> FileChanged:
        """The error for a read that found the end of the file before ``size``."""
        try:
            self.source.check("during the upload", hint=_SENT_HINT)
        except FileChanged as exc:
            return exc
        return FileChanged(
            f"file {self.source.shown} got shorter during the upload",
            _SENT_HINT,
            path=str(self.source.path),
        )


# -- the URL ----------------------------------------------------------------------------

_NOT_A_URL = "the upload URL is not an absolute http(s) URL"
_NOT_A_URL_HINT = "the registry must return an absolute upload_path"


@dataclass(frozen=True)
class _Target:
    url: str  # as requests normalises it (IDNA host, re-quoted path)
    scheme: str
    host: str
    port: int
    host_header: str
    request_target: str  # path and query, sent as is
    has_userinfo: bool

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            prepared = requests.PreparedRequest()
            prepared.prepare_url(url, None)
            parts = urllib.parse.urlsplit(prepared.url or "")
            port = parts.port
            host = parts.hostname
        except (requests.RequestException, ValueError):
            raise RegistryRefused(_NOT_A_URL, _NOT_A_URL_HINT) from None
        if parts.scheme not in ("http", "https") or not host:
            raise RegistryRefused(_NOT_A_URL, _NOT_A_URL_HINT)
        default_port = 80 if parts.scheme == "http" else 443
        shown_host = f"[{host}]" if ":" in host else host
        host_header = shown_host if port in (None, default_port) else f"{shown_host}:{port}"
        request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(
            url=prepared.url or "",
            scheme=parts.scheme,
            host=host,
            port=port or default_port,
            host_header=host_header,
            request_target=request_target,
            has_userinfo="@" in parts.netloc,
        )

    @property
    def where(self) -> str:
        """Scheme, host and port: what an error message may say of the URL."""
        return f"{self.scheme}://{self.host_header}"

    def scrub(self, text: str) -> str:
        """``text`` with the URL's path and query string cut out."""
        for secret in (self.url, self.request_target, urllib.parse.unquote(self.request_target)):
            if len(secret) > 1:
                text = text.replace(secret, "/…")
        return text


# -- the sendfile path ------------------------------------------------------------------


def _sendfile_usable(target: _Target, session: requests.Session, proxy: str | None) -> bool:
    if target.scheme != "http" or proxy or target.has_userinfo or session.auth is not None:
        return False
    if not hasattr(os, "sendfile"):
        return False
    # Only requests' own adapter is bypassed: not one the caller mounted with a send of
    # its own, nor one a test library (responses, say) patched, even after this import.
    send = type(session.get_adapter(target.url)).send
    return (
        getattr(send, "__module__", None) == "requests.adapters"
        and getattr(send, "__qualname__", None) == "HTTPAdapter.send"
    )


def _put_sendfile(
    target: _Target,
    guard: _Guard,
    timeout: tuple[float, float],
    progress: ProgressFn | None,
) -> tuple[PutResponse, int]:
    connect_timeout, read_timeout = timeout
    size = guard.size
    try:
        sock = socket.create_connection((target.host, target.port), timeout=connect_timeout)
    except TimeoutError:
        raise TransportError(
            f"no connection within {connect_timeout:g}s", target.where, sent=False, timeout=True
        ) from None
    except OSError as e:
        raise TransportError(f"cannot connect: {_os_reason(e)}", target.where, sent=False) from None
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (
            f"PUT {target.request_target} HTTP/1.1\r\n"
            f"Host: {target.host_header}\r\n"
            f"User-Agent: {USER_AGENT}\r\n"
            f"Content-Length: {size}\r\n"
            "Connection: close\r\n"
            "\r\n"
        ).encode("latin-1")
        sent = 0
        cut: OSError | None = None  # the send's own reset, if the peer hung up on it
        try:
            sock.settimeout(read_timeout)
            sock.sendall(head)
            sent, cut = _sendfile_body(sock, guard, read_timeout, progress)
        except (BrokenPipeError, ConnectionResetError) as e:
            cut = e  # hung up before the body: an answer (a 401, say) may still be there
        except TimeoutError:
            raise TransportError(
                f"timed out (no upload data taken for {read_timeout:g}s)",
                target.where,
                sent=True,
                timeout=True,
            ) from None
        except OSError as e:
            raise TransportError(
                f"sending failed: {_os_reason(e)}", target.where, sent=True
            ) from None
        if progress is not None and sent == size:
            progress(sent)
        with Deadline(read_timeout) as deadline:
            deadline.watch(lambda: sock)
            try:
                response = _read_response(sock, target, read_timeout, sent, size, cut)
            except TransportError:
                if deadline.expired:
                    raise timed_out(read_timeout, target.where) from None
                raise
            if deadline.expired:  # cut short, however whole it looks
                raise timed_out(read_timeout, target.where)
            return response, sent


def _sendfile_body(
    sock: socket.socket,
    guard: _Guard,
    read_timeout: float,
    progress: ProgressFn | None,
) -> tuple[int, OSError | None]:
    """Send the body with sendfile; stop early if the server starts answering.

    Returns the bytes sent and, when the server hung up mid-body, that error: the server
    may have answered and closed (a 413 or 401, say), so the caller reads on.
    """
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT | select.POLLIN)
    wait_ms = max(1, int(read_timeout * 1000))
    out_fd, in_fd, size = sock.fileno(), guard.source.fd, guard.size
    offset = 0
    allowed = 0
    next_report = PROGRESS_EVERY
    try:
        while offset < size:
            if offset >= allowed:
                allowed = guard.until(offset)
            try:
                n = os.sendfile(out_fd, in_fd, offset, min(allowed - offset, _SENDFILE_MAX))
            except (BrokenPipeError, ConnectionResetError) as e:
                return offset, e
            except BlockingIOError:
                events = poller.poll(wait_ms)
                if not events:
                    raise TimeoutError(errno.ETIMEDOUT, "timed out") from None
                if events[0][1] & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        verdict = _early_answer(sock)
                    except (BrokenPipeError, ConnectionResetError) as e:
                        return offset, e
                    if verdict == "stop":
                        break
                    if verdict == "go on":
                        # A server that said yes and reads on (nginx's `return 201`
                        # discards the body): finish the body as curl does.
                        poller.modify(sock.fileno(), select.POLLOUT)
                continue
            if n == 0:
                raise guard.shrank()
            offset += n
            if progress is not None and offset >= next_report and offset < size:
                progress(offset)
                next_report = offset + PROGRESS_EVERY
    finally:
        sock.settimeout(read_timeout)
    return offset, None


def _early_answer(sock: socket.socket) -> str:
    """What to do about bytes from the server before the body is all sent.

    An error status or a closed connection means stop sending (RFC 9112 9.5: a client
    should cease sending on an error answer); a 1xx or 2xx means go on.
    """
    try:
        start = sock.recv(12, socket.MSG_PEEK)
    except BlockingIOError:
        return "wait"
    except (BrokenPipeError, ConnectionResetError):
        raise  # the caller reports the hang-up itself
    except OSError:
        return "stop"
    if len(start) < 12:
        if not start:
            return "stop"
        time.sleep(0.001)  # the status line is still on its way
        return "wait"
    code = start[9:12]
    return "go on" if start.startswith(b"HTTP/") and code[:1] in (b"1", b"2") else "stop"


def _read_response(
    sock: socket.socket,
    target: _Target,
    read_timeout: float,
    sent: int,
    size: int,
    cut: OSError | None = None,
) -> PutResponse:
    response = http.client.HTTPResponse(sock, method="PUT")
    try:
        try:
            response.begin()
            body = response.read(BODY_KEEP) if response.status >= 200 else b""
        finally:
            response.close()
    except TimeoutError:
        raise TransportError(
            f"timed out (no answer to the upload within {read_timeout:g}s)",
            target.where,
            sent=True,
            timeout=True,
        ) from None
    except (http.client.HTTPException, OSError) as e:
        # After a reset the send met first, the read sees a plain end: the reset is the news.
        cause: BaseException = cut if cut is not None else e
        words = describe(cause)
        if words is None:
            what = "closed the connection" if sent < size else "sent no valid answer"
            detail = _os_reason(cause) if isinstance(cause, OSError) else type(cause).__name__
            words = f"{what} ({detail})"
        raise TransportError(
            f"{words} after {sent} of {size} upload bytes", target.where, sent=True
        ) from None
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for key, value in response.getheaders():
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    reason = printable(response.reason, 80)
    return PutResponse(status=response.status, reason=reason, headers=headers, body=body)


def _os_reason(e: OSError) -> str:
    if e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# -- the requests path ------------------------------------------------------------------


class _Body:
    """A request body requests frames with Content-Length and urllib3 sends in 1 MiB writes.

    It has ``__len__`` and ``read`` but no ``__iter__`` (which would make requests chunk
    an empty body) and no ``fileno`` (which would make requests stat the file). ``read``
    returns a view of an mmap buffer valid until the next call, at least 1 MiB at a time
    whatever urllib3's block size, read at explicit offsets of the descriptor (``pread``).
    ``tell``/``seek`` let urllib3 rewind on its own retries.
    """

    def __init__(
        self,
        guard: _Guard,
        progress: ProgressFn | None,
        deadline: Deadline | None = None,
    ) -> None:
        self._deadline = deadline
        self._guard = guard
        self._size = guard.size
        self._pos = 0
        self._allowed = 0
        self._progress = progress
        self._next_report = PROGRESS_EVERY
        self.told_whole = False  # progress() was given the whole size
        self._buf = mmap.mmap(-1, CHUNK)
        self._view = memoryview(self._buf)

    def __len__(self) -> int:
        return self._size

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError(errno.EINVAL, "only absolute seeks")
        self._pos = pos
        self._next_report = pos + PROGRESS_EVERY
        self.told_whole = False
        return pos

    def read(self, n: int = -1) -> memoryview:
        want = self._size - self._pos if n is None or n < 0 else max(n, CHUNK)
        want = min(want, CHUNK, self._size - self._pos)
        if want <= 0:
            if self._deadline is not None:
                self._deadline.arm()  # the body is out: the answer is due within the timeout
            if self._progress is not None and self._pos == self._size and not self.told_whole:
                self._progress(self._pos)  # said now: a signal from here on finds it sent
                self.told_whole = True
            return self._view[:0]
        if self._pos >= self._allowed:
            self._allowed = self._guard.until(self._pos)
        want = min(want, self._allowed - self._pos)
        got = pread_into(self._guard.source.fd, self._view[:want], self._pos)
        if not got:
            raise self._guard.shrank()
        self._pos += got
        if self._progress is not None and self._next_report <= self._pos < self._size:
            self._progress(self._pos)
            self._next_report = self._pos + PROGRESS_EVERY
        return self._view[:got]

    @property
    def sent(self) -> int:
        return self._pos


def _put_session(
    target: _Target,
    guard: _Guard,
    session: requests.Session,
    timeout: tuple[float, float],
    progress: ProgressFn | None,
    verify: bool | str | None,
    proxy: str | None,
) -> tuple[PutResponse, int]:
    size = guard.size
    deadline = Deadline(timeout[1], armed=False)
    body = _Body(guard, progress, deadline)
    try:
        prepared = _prepare_put(session, target, body, size)
        with deadline:
            response = session.send(
                prepared,
                allow_redirects=False,
                stream=True,
                timeout=timeout,
                verify=verify,
                # requests would pick the same one again; passing only it keeps NO_PROXY's
                # verdict
                proxies={target.scheme: proxy} if proxy else {},
                cert=session.cert,
            )
            deadline.arm()  # an early answer: the rest of it is due within the timeout too
            with response:
                # Undecoded: only its start is kept, and a gzip bomb must not inflate here.
                kept = response.raw.read(BODY_KEEP, decode_content=False) or b""
    except SEND_ERRORS as e:
        raise _session_failure(e, deadline, target) from None
    if deadline.expired:  # cut short, however whole it looks
        raise timed_out(timeout[1], target.where)
    sent = body.sent
    if progress is not None and sent == size and not body.told_whole:
        progress(sent)
    return (
        PutResponse(
            status=response.status_code,
            reason=printable(response.reason or "", 80),
            headers=response.headers,
            body=bytes(kept),
        ),
        sent,
    )


def _prepare_put(
    session: requests.Session, target: _Target, body: _Body, size: int
) -> requests.PreparedRequest:
    """The PUT as requests will send it: the session's settings, none of its API headers."""
    # None drops a header the session would add: the token belongs to API calls only.
    headers: dict[str, str | None] = {
        "User-Agent": USER_AGENT,
        "X-Atlas-Token": None,
        "Content-Type": None,
        "Accept-Encoding": "identity",
    }
    request = requests.Request("PUT", target.url, data=body, headers=headers)
    prepared = session.prepare_request(request)
    if "Transfer-Encoding" in prepared.headers or (
        prepared.headers.get("Content-Length") != str(size)
    ):
        raise AssertionError("requests did not frame the upload with Content-Length")
    return prepared


def _session_failure(e: Exception, deadline: Deadline, target: _Target) -> Exception:
    """What a PUT through requests that raised ``e`` failed with (no URL path in it)."""
    return send_failure(e, deadline, target.where) or RegistryRefused(
        f"the answer of {target.where} to the upload is malformed (a Location that is not a URL?)",
        "the registry must return the final upload URL in upload_path",
    )
