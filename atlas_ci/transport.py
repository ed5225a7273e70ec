"""The socket layer under every request: its overall deadline, and what its failure means.

**The deadline.**
A socket timeout bounds each read, not the whole answer: a server that drips one byte a
second, or answers with endless ``100 Continue`` lines, never trips it and holds the run
for ever. A :class:`Deadline` runs a small watcher thread; when the time is up it shuts
down every socket it was given, so the read or write blocked on it fails at once, and
the caller, seeing :attr:`Deadline.expired`, reports a timeout.

requests never shows its sockets, so :class:`DeadlineAdapter` hands each connection it
uses to the deadline current in this thread (``with deadline:``). A TLS handshake needs no
watch: Python bounds the whole of it by the socket's (connect) timeout. It changes nothing
else: ``send`` is requests' own, which :mod:`atlas_ci.transfer` relies on.

**The answer.** :func:`read_body` reads a streamed answer up to a cap, counted after
gzip or deflate is undone, so neither an endless body nor a small bomb takes the memory.

**The CA.** :func:`tls_verify_argument` turns ``--ca-file``/``ATLAS_CAPATH`` into what
requests takes.

**The failure.** :func:`from_requests` turns a requests exception into one
:class:`~atlas_ci.errors.TransportError` that records whether the request may have reached
the server, decided from the exception types urllib3 chains, never from their text.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import requests
import requests.adapters
import urllib3
import urllib3.exceptions

from atlas_ci.cafile import CA_FILE_LIMIT, check_ca_file
from atlas_ci.errors import ConfigError, TransportError

if TYPE_CHECKING:
    # The connection protocol urllib3's pools are written against (its module is private;
    # the name is the one its own signatures use).
    from urllib3._base_connection import BaseHTTPConnection

SockFn = Callable[[], "socket.socket | None"]

_current = threading.local()
_RECHECK = 0.05  # after expiry: a connection may only now have made its socket


class Deadline:
    """``seconds`` for one request; ``armed=False`` waits for :meth:`arm` to start the clock."""

    def __init__(self, seconds: float, *, armed: bool = True) -> None:
        self.seconds = seconds
        self.expired = False
        self._armed = armed
        self._lock = threading.Lock()
        self._socks: list[SockFn] = []
        self._done = threading.Event()
        self._start = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Deadline | None = None

    def __enter__(self) -> Deadline:
        self._previous = current()
        _current.deadline = self
        self._thread = threading.Thread(target=self._watch, name="atlas-ci-deadline", daemon=True)
        self._thread.start()
        if self._armed:
            self._start.set()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.deadline = self._previous
        self._done.set()
        self._start.set()
        with self._lock:
            self._socks.clear()

    def arm(self) -> None:
        """Start the clock now (the PUT's: once its body is out, the answer is due)."""
        self._start.set()

    def watch(self, sock: SockFn) -> None:
        """Shut ``sock()`` down when the time is up (at once if it already is)."""
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def _watch(self) -> None:
        self._start.wait()
        if self._done.is_set() or self._done.wait(self.seconds):
            return
        while True:
            with self._lock:
                self.expired = True
                for sock in self._socks:
                    _shutdown(sock)
            if self._done.wait(_RECHECK):
                return


def current() -> Deadline | None:
    """The deadline this thread's request runs under, if any."""
    found: Deadline | None = getattr(_current, "deadline", None)
    return found


def _shutdown(sock: SockFn) -> None:
    s = sock()
    if s is None:
        return
    with contextlib.suppress(OSError, ValueError):
        # The plain socket's shutdown, for a TLS one too: no TLS state touched from here.
        socket.socket.shutdown(s, socket.SHUT_RDWR)


def _watched(conn: BaseHTTPConnection) -> None:
    deadline = current()
    if deadline is not None:
        deadline.watch(lambda: _socket_of(conn))


def _socket_of(conn: BaseHTTPConnection) -> socket.socket | None:
    # The protocol does not name it: urllib3's connections are http.client's, whose socket
    # is made on connect (None before, and again once closed).
    sock = getattr(conn, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


# urllib3 validates a connection first thing in each request it makes on it (and an HTTPS
# pool connects it there): the moment the deadline starts watching its socket.
class _HTTPPool(urllib3.HTTPConnectionPool):
    def _validate_conn(self, conn: BaseHTTPConnection) -> None:
        _watched(conn)
        super()._validate_conn(conn)


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    def _validate_conn(self, conn: BaseHTTPConnection) -> None:
        _watched(conn)
        super()._validate_conn(conn)


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections the current :class:`Deadline` can cut."""

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = requests.adapters.DEFAULT_POOLBLOCK,
        **pool_kwargs: object,
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: object) -> urllib3.PoolManager:
        # A ProxyManager, or urllib3's SOCKSProxyManager (a PoolManager) for socks:// proxies.
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


# What a failure was, by the type of an exception in its chain: first match wins.
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (urllib3.exceptions.NameResolutionError, "host name not found"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (BrokenPipeError, "connection closed while sending"),
    (http.client.RemoteDisconnected, "connection closed without a response"),
    (http.client.IncompleteRead, "response cut short"),
    (urllib3.exceptions.IncompleteRead, "response cut short"),
    (urllib3.exceptions.ProtocolError, "bad response"),
)
# Failures that happen before a byte of the request leaves: nothing can have been processed.
_NEVER_SENT = (
    urllib3.exceptions.NewConnectionError,  # also NameResolutionError
    urllib3.exceptions.ConnectTimeoutError,
    requests.exceptions.ConnectTimeout,
    ConnectionRefusedError,
)


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``reason``, exception ``args``, causes), breadth first."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        inner = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        todo.extend(i for i in inner if isinstance(i, BaseException))
    return seen


def from_requests(exc: requests.RequestException, where: str) -> TransportError:
    """The typed failure of a request to ``where`` (scheme, host and port only)."""
    found = chain(exc)
    sent = not any(isinstance(e, _NEVER_SENT) for e in found)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in found):
        return TransportError("TLS verification failed", where, sent=False, tls=True)
    if isinstance(exc, requests.exceptions.SSLError):
        # Not the certificate: a handshake that failed (nothing sent) or a TLS record that
        # broke mid-answer (sent). The types do not tell which: a write counts as sent.
        return TransportError("TLS error", where, sent=sent)
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportError("timed out", where, sent=sent, timeout=True)
    words = describe(exc) or type(found[-1]).__name__
    return TransportError(words, where, sent=sent)


def describe(exc: BaseException) -> str | None:
    """The short words for a transport failure (``connection reset``), by exception type."""
    found = chain(exc)
    for kind, words in _REASONS:
        if any(isinstance(e, kind) for e in found):
            return words
    return None


# What sending a request and reading its answer can raise: requests' own errors, and what
# urllib3, http.client and the socket raise from under it while the answer is read.
SEND_ERRORS: tuple[type[Exception], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


def send_failure(exc: Exception, deadline: Deadline, where: str) -> TransportError | None:
    """What a request run under ``deadline`` that raised one of :data:`SEND_ERRORS` failed with.

    None for a ValueError from inside send: requests parses a redirect's Location even when
    it follows none, and one that is not a URL raises it; the caller words that refusal.
    """
    if deadline.expired:
        return timed_out(deadline.seconds, where)
    if isinstance(exc, requests.RequestException):
        return from_requests(exc, where)
    if isinstance(exc, ValueError) and not isinstance(exc, urllib3.exceptions.HTTPError):
        return None
    return from_requests(requests.ConnectionError(exc), where)  # reading the answer


def timed_out(seconds: float, where: str, *, sent: bool = True) -> TransportError:
    """What a request cut by its :class:`Deadline` failed with."""
    return TransportError(
        f"timed out (no whole answer within {seconds:g}s)", where, sent=sent, timeout=True
    )


READ_PIECE = 64 << 10


class BodyTooLarge(Exception):
    """The answer holds more than the cap (counted after decompression)."""


class BadEncoding(Exception):
    """The answer's ``Content-Encoding`` is not gzip or deflate, or its data is broken."""


class _Inflater:
    """gzip (every member) or deflate (zlib-wrapped or raw), never past ``cap`` bytes out."""

    def __init__(self, encoding: str) -> None:
        self._wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._raw_deflate_tried = encoding != "deflate"
        self._d = zlib.decompressobj(self._wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        out = bytearray()
        while data and len(out) <= room:
            try:
                out += self._d.decompress(data, room + 1 - len(out))
            except zlib.error:
                if self._raw_deflate_tried:
                    raise BadEncoding("the compressed answer is broken") from None
                # Some servers send raw deflate under "deflate": read it that way.
                self._raw_deflate_tried = True
                self._wbits = -zlib.MAX_WBITS
                self._d = zlib.decompressobj(self._wbits)
                continue
            self._raw_deflate_tried = True
            data = self._d.unconsumed_tail
            if self._d.eof:
                data = self._d.unused_data
                if data and self._wbits > zlib.MAX_WBITS:
                    self._d = zlib.decompressobj(self._wbits)  # the next gzip member
                else:
                    break  # trailing bytes after the stream: ignored, as curl does
        return bytes(out)


def read_body(resp: requests.Response, cap: int, *, truncate: bool = False) -> bytes:
    """The body of a ``stream=True`` response, decoded, at most ``cap`` bytes.

    More than ``cap`` raises :class:`BodyTooLarge`, or with ``truncate`` returns the first
    ``cap`` bytes (an error page is only read for its message). The compressed bytes are
    capped too: empty deflate blocks inflate to nothing, and can go on for ever.
    """
    codings = [
        c.strip().lower()
        for c in resp.headers.get("Content-Encoding", "").split(",")
        if c.strip() and c.strip().lower() != "identity"
    ]
    if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
        raise BadEncoding(f"the answer is in an encoding not asked for ({', '.join(codings)})")
    inflater = _Inflater(codings[0]) if codings else None
    out = bytearray()
    taken = 0
    while True:
        piece = resp.raw.read(READ_PIECE, decode_content=False)
        if not piece:
            return bytes(out)
        taken += len(piece)
        if inflater is not None:
            piece = inflater.feed(piece, cap - len(out))
        out += piece
        if len(out) > cap or taken > cap:
            if truncate:
                return bytes(out[:cap])
            raise BodyTooLarge(f"more than {cap >> 20} MiB")


_CA_BUNDLES: dict[str, str] = {}
_CA_DIR_FILES = 10_000


def tls_verify_argument(verify: bool | str) -> bool | str:
    """What requests needs for ``verify``: a CA directory becomes one bundle file.

    OpenSSL reads a CA directory only through hash-named links (``c_rehash``); Go's
    ``ATLAS_CAPATH``, which users bring along, took every PEM file in it. The bundle is a
    private temp file removed at exit. ``False`` also silences urllib3's per-request
    warning: the run already warned once, in one line. Called only when a request needs
    TLS: an ``http://`` registry reads nothing of the directory.
    """
    if verify is False:
        import warnings

        from urllib3.exceptions import InsecureRequestWarning

        warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        return False
    if not isinstance(verify, str) or not Path(verify).is_dir():
        return verify
    if verify in _CA_BUNDLES:
        return _CA_BUNDLES[verify]
    import atexit
    import os
    import tempfile

    pems = _pem_files(Path(verify))
    if not pems:
        raise ConfigError(
            f"the CA directory {verify!r} (ATLAS_CAPATH) holds no PEM certificate",
            "put the registry's CA certificate (PEM) in it, or pass --ca-file",
        )
    fd, bundle = tempfile.mkstemp(prefix="atlas-ci-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(pems))
    atexit.register(lambda: Path(bundle).unlink(missing_ok=True))
    check_ca_file(bundle, f"the PEM files of the CA directory {verify!r} (ATLAS_CAPATH)")
    _CA_BUNDLES[verify] = bundle
    return bundle


def _pem_files(directory: Path) -> list[str]:
    """The PEM text of each file in ``directory``, at most 16 MiB read in all.

    A file larger than that is not read at all (a CA certificate is a few KiB; a 1.5 GB file
    was read whole), nor are files past the 10,000th.
    """
    pems = []
    left = CA_FILE_LIMIT
    for count, entry in enumerate(sorted(directory.iterdir())):
        if count >= _CA_DIR_FILES:
            break
        try:
            if not entry.is_file() or entry.stat().st_size > CA_FILE_LIMIT:
                continue
            with entry.open("r", encoding="ascii", errors="replace") as fh:
                text = fh.read(left + 1)
        except OSError:
            continue
        left -= len(text)
        if left < 0:
            raise ConfigError(
                f"the CA directory {str(directory)!r} (ATLAS_CAPATH) holds more than "
                f"{CA_FILE_LIMIT >> 20} MiB of files",
                "keep only the registry's CA certificates (PEM) in it, or pass --ca-file",
            )
        if "-----BEGIN CERTIFICATE-----" in text:
            pems.append(text.strip() + "\n")
    return pems
