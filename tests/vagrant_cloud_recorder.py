"""A small recording Vagrant Cloud API on 127.0.0.1: answers as vagrant-cloud-wire.md says
(every success exactly 200, the objects Packer 1.6.6 decodes), keeps every request.

It exists to observe clients from the outside (real Packer and ``atlas-ci upload --to
vagrant-cloud`` against the same server); ``atlas-ci serve`` is the real registry. Boxes,
versions and providers live in memory; a provider's checksum is the sha256 of the box it
received, set once the upload is complete (after the callback of a direct upload).

It also serves what ``vagrant box add`` reads (vagrant-cloud-wire.md §6): the catalog at
``/{user}/{name}`` (released versions only) and each provider's box at ``/files/...``.

``faults`` maps ``"METHOD /path-regex"`` to ``"lose"`` (the request is processed, then the
connection is closed with no answer) or ``"refuse"`` (503, nothing processed); each fires
once, on the first request that matches.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.recording_server import Recorded
from tests.threaded_server import ThreadedServer

API = "/api/v1"
NOW = "2026-12-07T00:00:00.000Z"


@dataclass
class Provider:
    name: str
    checksum: str | None = None
    pending: str | None = None  # the upload token while the box is on its way
    data: bytes | None = None

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hosted": True,
            "url": None,
            "original_url": None,
            "checksum": self.checksum,
            "checksum_type": "sha256" if self.checksum else None,
            "created_at": NOW,
            "updated_at": NOW,
            "download_url": None,
        }


@dataclass
class Version:
    version: str
    description: str = ""
    status: str = "unreleased"
    providers: dict[str, Provider] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "number": self.version,
            "status": self.status,
            "description": self.description,
            "created_at": NOW,
            "updated_at": NOW,
            "providers": [p.json() for p in self.providers.values()],
        }


@dataclass
class Box:
    username: str
    name: str
    private: bool = False
    versions: dict[str, Version] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "tag": f"{self.username}/{self.name}",
            "username": self.username,
            "name": self.name,
            "private": self.private,
            "created_at": NOW,
            "updated_at": NOW,
            "current_version": None,
            "versions": [v.json() for v in reversed(self.versions.values())],
        }


@dataclass
class State:
    requests: list[Recorded] = field(default_factory=list)
    boxes: dict[str, Box] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # token -> where
    conflicts: list[str] = field(default_factory=list)  # creations refused as duplicates
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._answer(status, {"errors": [message], "success": False})

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = Recorded(self.command, self.path, dict(self.headers.items()), body)
        state = self.server.state
        if self.command == "GET" and self._download(self.path.split("?")[0]):
            return
        with state.lock:
            state.requests.append(rec)
            fault = self._fault(rec)
            if fault == "refuse":
                self.close_connection = True
                self._error(503, "unavailable")
                return
            status, payload = _route(state, rec, self.headers.get("Host") or "")
            if rec.method == "POST" and status == 422:
                state.conflicts.append(rec.path)
        if fault == "lose":
            self.close_connection = True  # processed; the answer is lost
            return
        self._answer(status, payload)

    def _fault(self, rec: Recorded) -> str | None:
        for rule, kind in list(self.server.state.faults.items()):
            method, _, pattern = rule.partition(" ")
            if method == rec.method and re.search(pattern, rec.path.split("?")[0]):
                del self.server.state.faults[rule]
                return kind
        return None

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def do_HEAD(self) -> None:
        with self.server.state.lock:
            status, _ = _catalog(self.server.state, self.path, self.headers.get("Host") or "")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _download(self, path: str) -> bool:
        """The box of ``/files/USER/NAME/VERSION/PROVIDER``, if that is the path."""
        parts = path.split("/")
        if len(parts) != 6 or parts[1] != "files":
            return False
        box = self.server.state.boxes.get(f"{parts[2]}/{parts[3]}")
        version = box.versions.get(parts[4]) if box else None
        provider = version.providers.get(parts[5]) if version else None
        data = provider.data if provider and provider.checksum else None
        if data is None:
            self._error(404, "no such file")
            return True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True


def _route(state: State, rec: Recorded, host: str) -> tuple[int, Any]:
    path = rec.path.split("?")[0]
    if path.startswith("/store/"):
        return _store(state, path.rsplit("/", 1)[1], rec.body, confirm=False)
    if path.startswith(API + "/upload/"):
        return _store(state, path.rsplit("/", 1)[1], rec.body, confirm=True)
    if path.startswith(API + "/callback/"):
        return _callback(state, path.rsplit("/", 1)[1])
    if not path.startswith(API + "/"):
        return _catalog(state, path, host)
    parts = path[len(API) + 1 :].split("/")
    if parts == ["authenticate"] and rec.method == "GET":
        return 200, {"user": {"username": "tester"}}
    if parts == ["boxes"] and rec.method == "POST":
        data = rec.json()
        tag = f"{data['username']}/{data['name']}"
        if tag in state.boxes:
            return 422, {"errors": ["Type has already been taken"], "success": False}
        state.boxes[tag] = Box(data["username"], data["name"], bool(data.get("is_private")))
        return 200, state.boxes[tag].json()
    if len(parts) >= 3 and parts[0] == "box":
        box = state.boxes.get(f"{parts[1]}/{parts[2]}")
        if box is None:
            return 404, {"errors": ["Resource not found!"], "success": False}
        return _box_route(state, box, parts[3:], rec, host)
    return 404, {"errors": ["no such endpoint"], "success": False}


def _box_route(
    state: State, box: Box, rest: list[str], rec: Recorded, host: str
) -> tuple[int, Any]:
    method = rec.method
    if not rest and method == "GET":
        return 200, box.json()
    if rest == ["versions"] and method == "POST":
        fields = rec.json()["version"]
        if fields["version"] in box.versions:
            return 422, {"errors": ["Version has already been taken"], "success": False}
        made = Version(fields["version"], fields.get("description", ""))
        box.versions[made.version] = made
        return 200, made.json()
    version = box.versions.get(rest[1]) if len(rest) >= 2 and rest[0] == "version" else None
    if version is None:
        return 404, {"errors": ["Resource not found!"], "success": False}
    rest = rest[2:]
    if rest == ["release"] and method == "PUT":
        if version.status == "active":
            return 422, {"errors": ["This version has already been released"], "success": False}
        version.status = "active"
        return 200, version.json()
    if rest == ["providers"] and method == "POST":
        name = rec.json()["provider"]["name"]
        if name in version.providers:
            return 422, {"errors": ["Metadata provider must be unique"], "success": False}
        version.providers[name] = Provider(name)
        return 200, version.providers[name].json()
    provider = version.providers.get(rest[1]) if len(rest) >= 2 and rest[0] == "provider" else None
    if provider is None:
        return 404, {"errors": ["Resource not found!"], "success": False}
    where = (f"{box.username}/{box.name}", version.version, provider.name)
    if rest[2:] == [] and method == "GET":
        return 200, provider.json()
    if rest[2:] in (["upload"], ["upload", "direct"]) and method == "GET":
        token = secrets.token_hex(8)
        state.uploads[token] = where
        provider.pending = token
        if rest[2:] == ["upload"]:
            return 200, {"upload_path": f"http://{host}{API}/upload/{token}"}
        return 200, {
            "upload_path": f"http://{host}/store/{token}?sig=presigned-secret-{token}",
            "callback": f"http://{host}{API}/callback/{token}",
        }
    return 404, {"errors": ["no such endpoint"], "success": False}


def _catalog(state: State, path: str, host: str) -> tuple[int, Any]:
    """What Vagrant reads at ``/{user}/{name}``: released versions and their boxes."""
    parts = path.split("?")[0].strip("/").split("/")
    box = state.boxes.get("/".join(parts)) if len(parts) == 2 else None
    if box is None:
        return 404, {"errors": ["not found"], "success": False}
    versions = [
        {
            "version": v.version,
            "providers": [
                {
                    "name": p.name,
                    "url": f"http://{host}/files/{box.username}/{box.name}/{v.version}/{p.name}",
                    "checksum_type": "sha256",
                    "checksum": p.checksum,
                }
                for p in v.providers.values()
                if p.checksum
            ],
        }
        for v in reversed(box.versions.values())
        if v.status == "active"
    ]
    return 200, {"name": f"{box.username}/{box.name}", "versions": versions}


def _provider_of(state: State, token: str) -> Provider | None:
    where = state.uploads.get(token)
    if where is None:
        return None
    tag, number, name = where
    return state.boxes[tag].versions[number].providers[name]


def _store(state: State, token: str, data: bytes, *, confirm: bool) -> tuple[int, Any]:
    provider = _provider_of(state, token)
    if provider is None or provider.pending != token:
        return 404, {"errors": ["unknown upload"], "success": False}
    provider.data = data
    if confirm:
        provider.checksum = hashlib.sha256(data).hexdigest()
        provider.pending = None
    return 200, {}


def _callback(state: State, token: str) -> tuple[int, Any]:
    provider = _provider_of(state, token)
    if provider is None or provider.pending != token or provider.data is None:
        return 422, {"errors": ["no upload to confirm"], "success": False}
    provider.checksum = hashlib.sha256(provider.data).hexdigest()
    provider.pending = None
    return 200, provider.json()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up (Packer at exit, a lost answer) is not the test's failure


class VagrantCloudRecorder(ThreadedServer[_Server]):
    """``with VagrantCloudRecorder() as srv:`` then ``srv.api`` (the API root) and
    ``srv.requests``; ``srv.state`` holds the boxes."""

    def __init__(self, *, faults: dict[str, str] | None = None) -> None:
        super().__init__(_Server, _Handler)
        self._server.state = State(faults=dict(faults or {}))

    @property
    def api(self) -> str:
        return self.url + API

    @property
    def state(self) -> State:
        return self._server.state

    @property
    def requests(self) -> list[Recorded]:
        with self._server.state.lock:
            return list(self._server.state.requests)
