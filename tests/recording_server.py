"""A small recording Atlas on 127.0.0.1: answers per the contract, keeps every request.

Used by the wire tests to pin what ``atlas-ci upload`` sends, byte for byte. It is not the
registry (``atlas-ci serve`` is); it exists to observe the client from the outside.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


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

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        rec = self._record()
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
        parts = rec.path.strip("/").split("/")
        state = self.server.state
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
            self._send(201, answer)
        else:
            self._send(404, {"errors": ["no such path"]})

    def do_PUT(self) -> None:
        self._record()
        self._send(200, {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State


class RecordingServer:
    """``with RecordingServer() as srv:`` then ``srv.url`` and ``srv.requests``."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = State()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Recorded]:
        return list(self._server.state.requests)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
