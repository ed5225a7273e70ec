"""A hostile Atlas on 127.0.0.1 that quotes the client's token back in every answer.

It puts the ``X-Atlas-Token`` it received into answer bodies, error lists and the HTTP reason
phrase, raw and in the forms a server might escape it into (HTML, JSON, percent-encoding), so a
test can check that no output of ``atlas-ci`` shows any form of it. ``mode`` picks the
answers: ``ok`` (a whole upload or search succeeds), ``refuse`` (422 on the version POST and
the search), ``fail`` (503 on the token check, retried), ``odd`` (418 on the token check, not
retried) or ``unauthorized`` (401 everywhere).
"""

from __future__ import annotations

import html
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from tests.threaded_server import ThreadedServer

MODES = ("ok", "refuse", "fail", "odd", "unauthorized")


def echoes(token: str) -> list[str]:
    """The token as a careless server would quote it: raw and escaped."""
    return [token, html.escape(token), json.dumps(token), quote(token, safe="")]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _token(self) -> str:
        return self.headers.get("X-Atlas-Token") or ""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, reason: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, reason)
        if status == 503:
            self.send_header("Retry-After", "0")  # retries at once: the test stays short
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refusal(self, token: str) -> dict[str, Any]:
        return {"errors": [f"token {form} is not allowed here" for form in echoes(token)]}

    def _common(self) -> bool:
        """The answers of the failing modes; True when one was sent."""
        token = self._token()
        mode = self.server.mode
        if mode == "unauthorized":
            self._send(401, self._refusal(token), reason=f"Unauthorized {token}")
            return True
        if mode == "fail" and self.path.startswith("/api/v1/authenticate"):
            self._send(503, self._refusal(token), reason=f"down for {token}")
            return True
        if mode == "odd" and self.path.startswith("/api/v1/authenticate"):
            self._send(418, self._refusal(token), reason=f"teapot for {token}")
            return True
        return False

    def do_GET(self) -> None:
        self._read_body()
        if self._common():
            return
        token = self._token()
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts == ["api", "v1", "authenticate"]:
            self._send(200, {"user": {"username": token, "email": echoes(token)}})
        elif parts[:3] == ["api", "v1", "artifacts"] and parts[-1] == "search":
            if self.server.mode == "refuse":
                self._send(422, self._refusal(token))
                return
            user, name, atype = parts[3], parts[4], parts[5]
            versions = [
                {
                    "username": user,
                    "name": name,
                    "artifact_type": atype,
                    "version": number,
                    "id": form,
                    "slug": f"{user}/{name}/{atype}/{number} {form}",
                    "metadata": {"echo": form, form: "key", "build": form},
                }
                for number, form in enumerate(echoes(token), start=1)
            ]
            self._send(200, {"versions": versions})
        elif parts[:3] == ["api", "v1", "artifacts"] and len(parts) == 5:
            artifact = {"username": parts[3], "name": parts[4], "note": echoes(token)}
            self._send(200, {"artifact": artifact})
        else:
            self._send(404, {"errors": [f"no such path for {form}" for form in echoes(token)]})

    def do_POST(self) -> None:
        body = self._read_body()
        if self._common():
            return
        token = self._token()
        parts = self.path.strip("/").split("/")
        if parts == ["api", "v1", "artifacts"]:
            self._send(201, json.loads(body))
        elif parts[:3] == ["api", "v1", "artifacts"] and len(parts) == 6:
            if self.server.mode == "refuse":
                self._send(422, self._refusal(token))
                return
            sent = json.loads(body)["artifact_version"]
            answer = {
                "version": 1,
                "id": token,
                "metadata": {"echo": token, **(sent.get("metadata") or {})},
                "slug": f"{parts[3]}/{parts[4]}/{parts[5]}/1",
            }
            if sent.get("file"):
                answer["upload_path"] = f"http://{self.headers['Host']}/binstore/echo-up-1"
            self._send(201, answer)
        else:
            self._send(404, {"errors": [f"no such path for {token}"]})

    def do_PUT(self) -> None:
        self._read_body()
        self._send(200, {"note": echoes(self._token())})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode: str


class EchoServer(ThreadedServer[_Server]):
    """``with EchoServer("ok") as srv:`` then ``srv.url``."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(_Server, _Handler)
        self._server.mode = mode
