"""The thread a test's in-process HTTP server runs in: ``with`` starts it, leaving stops it.

``tests/echo_server.py`` and ``tests/recording_server.py`` answer in their own ways; how they
are bound (127.0.0.1, a free port), served and stopped is this one piece.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, TypeVar

ServerT = TypeVar("ServerT", bound=ThreadingHTTPServer)
SelfT = TypeVar("SelfT", bound="ThreadedServer[Any]")


class ThreadedServer(Generic[ServerT]):
    """Serves ``server_class`` on 127.0.0.1 in a daemon thread while in a ``with`` block."""

    def __init__(self, server_class: type[ServerT], handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = server_class(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _stopping(self) -> None:
        """Called before the server shuts down (to release a request that waits on it)."""

    def __enter__(self: SelfT) -> SelfT:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
