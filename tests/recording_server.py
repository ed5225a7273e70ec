"""A small recording Atlas on 127.0.0.1: answers per the contract, keeps every request.

Used by the wire tests to pin what ``atlas-ci upload`` sends, byte for byte. It is not the
registry (``atlas-ci serve`` is); it exists to observe the client from the outside.

``RecordingServer(idempotency=True)`` honours ``Idempotency-Key`` on the version POST the
way atlas-wire §11 says (and announces it in ``X-Atlas-Extensions``). ``hostile`` maps
``"METHOD /path-regex"`` to a function that answers a matching request in its own way
(see ``tests/hostile_registry.py``): the request is recorded first, body read.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.threaded_server import ThreadedServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class State:
    requests: list[Recorded] = field(default_factory=list)
    artifacts: set[str] = field(default_factory=set)
    versions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    idempotency: bool = False
    # Idempotency-Key -> (the body it came with, the answer it got)
    keyed: dict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=dict)
    hostile: dict[str, Callable[[_Handler], None]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
        with self.server.state.lock:
            self.server.state.requests.append(rec)
        return rec

    def _hostile(self, rec: Recorded) -> bool:
        """Answer ``rec`` the hostile way if a rule says so (and close the connection)."""
        for rule, behave in self.server.state.hostile.items():
            method, _, pattern = rule.partition(" ")
            if method == rec.method and re.search(pattern, rec.path.split("?")[0]):
                self.close_connection = True
                with contextlib.suppress(OSError):  # the client hung up, as it should
                    behave(self)
                return True
        return False

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if self.server.state.idempotency:
            self.send_header("X-Atlas-Extensions", "other-thing, Idempotency-Key")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        rec = self._record()
        if self._hostile(rec):
            return
        parts = rec.path.split("?")[0].strip("/").split("/")
        if parts == ["api", "v1", "authenticate"]:
            self._send(200, {"user": {"username": "tester"}})
        elif parts[:3] == ["api", "v1", "artifacts"] and len(parts) == 5:
            slug = "/".join(parts[3:5])
            if slug in self.server.state.artifacts:
                self._send(200, {"artifact": {"username": parts[3], "name": parts[4]}})
            else:
                self._send(404, {"errors": ["artifact not found"]})
        else:
            self._send(404, {"errors": ["no such path"]})

    def do_POST(self) -> None:
        rec = self._record()
        if self._hostile(rec):
            return
        parts = rec.path.strip("/").split("/")
        state = self.server.state
        idem = self.headers.get("Idempotency-Key") if state.idempotency else None
        if idem is not None and len(parts) >= 6:
            with state.lock:
                known = state.keyed.get(idem)
            if known is not None:
                if known[0] != rec.body:
                    self._send(422, {"errors": ["Idempotency-Key reused with another body"]})
                else:
                    self._send(201, known[1])
                return
        if parts == ["api", "v1", "artifacts"]:
            art = rec.json()["artifact"]
            state.artifacts.add(f"{art['username']}/{art['name']}")
            self._send(201, {"artifact": art})
        elif parts[:3] == ["api", "v1", "artifacts"] and len(parts) >= 6:
            user, name, atype = parts[3], parts[4], "/".join(parts[5:])
            body = rec.json()["artifact_version"]
            with state.lock:
                key = f"{user}/{name}/{atype}"
                state.versions[key] = state.versions.get(key, 0) + 1
                number = state.versions[key]
            answer = {
                "username": user,
                "name": name,
                "artifact_type": atype,
                "id": body["id"],
                "version": number,
                "metadata": body["metadata"],
                "file": body["file"],
                "slug": f"{key}/{number}",
            }
            if body["file"]:
                host = self.headers.get("Host")
                answer["upload_path"] = (
                    f"http://{host}/binstore/{number}?sig=presigned-secret-{number}"
                )
            if idem is not None:
                with state.lock:
                    state.keyed[idem] = (rec.body, answer)
            self._send(201, answer)
        else:
            self._send(404, {"errors": ["no such path"]})

    def do_PUT(self) -> None:
        if not self._hostile(self._record()):
            self._send(200, {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State


class RecordingServer(ThreadedServer[_Server]):
    """``with RecordingServer() as srv:`` then ``srv.url`` and ``srv.requests``."""

    def __init__(
        self,
        *,
        idempotency: bool = False,
        hostile: dict[str, Callable[[_Handler], None]] | None = None,
    ) -> None:
        super().__init__(_Server, _Handler)
        self._server.state = State(idempotency=idempotency, hostile=dict(hostile or {}))

    @property
    def requests(self) -> list[Recorded]:
        return list(self._server.state.requests)

    def _stopping(self) -> None:
        self._server.state.stopping.set()
