"""Bounds on connections: the header deadline of each one, and what happens past the limit.

Every connection has a thread of its own (:class:`~.server.RegistryServer`), so the number
of connections is the number of threads. Two things keep both bounded:

- :class:`DeadlineIO` reads a connection's socket with a deadline for the request line and
  headers, so a client that sends them a byte at a time cannot hold a thread for ever
  (each read alone would stay inside the idle ``--timeout``).
- :class:`Refuser` answers connections past ``--max-connections`` with a 503 and closes
  them, all from one thread, without a thread per refused connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import threading
import time

from atlas_ci import __version__

log = logging.getLogger("atlas_ci.registry")

REFUSED_LINGER_SECONDS = 1.0
"""How long a refused connection is read (and dropped) after the 503, so closing it does not
reset the answer away before the client reads it."""


class HeaderTimeout(TimeoutError):
    """The request line and headers did not arrive within the header deadline."""


class DeadlineIO(socket.SocketIO):
    """The raw reading side of a connection; while :attr:`deadline` is set, reads end there.

    Each read waits at most ``idle_timeout`` (``--timeout``) as before; with a deadline (a
    :func:`time.monotonic` value) also no later than it, and then raises
    :class:`HeaderTimeout`.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        super().__init__(sock, "rb")
        self._socket = sock
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None
        self._wait = idle_timeout
        sock.settimeout(idle_timeout)

    def readinto(self, buffer: memoryview | bytearray) -> int | None:  # type: ignore[override]
        wait = self.idle_timeout
        deadline = self.deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HeaderTimeout("the request headers did not arrive in time")
            wait = min(wait, left)
        if wait != self._wait:
            self._socket.settimeout(wait)
            self._wait = wait
        try:
            return super().readinto(buffer)
        except TimeoutError:
            if deadline is not None:
                raise HeaderTimeout("the request headers did not arrive in time") from None
            raise


def refusal(limit: int, retry_after: int) -> bytes:
    """The whole 503 answer sent to a connection past the limit."""
    body = json.dumps(
        {
            "errors": [
                f"the registry is serving its limit of {limit} connections; "
                f"retry in {retry_after} s"
            ]
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Server: atlas-ci-registry/{__version__}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Refuser:
    """Sends a canned answer to connections past the limit and closes them, on one thread.

    The answer is written without blocking (it fits any socket buffer); then the connection
    is read, and what arrives dropped, for :data:`REFUSED_LINGER_SECONDS` or until the
    client closes: closing with the client's request unread would make the kernel send a
    reset, which can destroy the answer before the client reads it. At most ``max_held``
    connections are kept lingering; past that one is closed at once.
    """

    def __init__(self, answer: bytes, max_held: int) -> None:
        self._answer = answer
        self._max_held = max_held
        self._selector = selectors.DefaultSelector()
        self._held: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._refused = 0
        self._last_logged = 0.0

    def refuse(self, sock: socket.socket, client: str) -> None:
        """Answer ``sock`` and take it over: the caller no longer closes it."""
        self._note(client)
        try:
            sock.setblocking(False)
            sock.send(self._answer)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        with self._lock:
            if self._stopping or len(self._held) >= self._max_held:
                sock.close()
                return
            self._held[sock] = time.monotonic() + REFUSED_LINGER_SECONDS
            self._selector.register(sock, selectors.EVENT_READ)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="refuser", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had: close at once instead
                    self._selector.unregister(sock)
                    del self._held[sock]
                    sock.close()
                    return
                self._thread = thread

    def _note(self, client: str) -> None:
        # One log line a second at most: a flood of connections must not flood the log.
        self._refused += 1
        now = time.monotonic()
        if now - self._last_logged >= 1.0:
            log.info(
                "%s refused: connection limit reached (%d refused since the last such line)",
                client,
                self._refused,
            )
            self._refused = 0
            self._last_logged = now

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    more = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    more = b""
                if not more:
                    self._drop(sock)
            now = time.monotonic()
            with self._lock:
                expired = [s for s, until in self._held.items() if until <= now]
            for sock in expired:
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            if self._held.pop(sock, None) is None:
                return
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        sock.close()

    def close(self) -> None:
        """Close every held connection and stop the thread."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._lock:
            held, self._held = list(self._held), {}
        for sock in held:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        self._selector.close()
