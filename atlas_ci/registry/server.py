"""The registry served: a request routed, its asker admitted, its front door run.

:class:`RegistryServer` is the :class:`~.http.ConnectionServer` over one
:class:`~atlas_ci.registry.storage.Storage`. Each request, once :mod:`.http` has read it and
checked its framing, goes through :meth:`RegistryHandler.respond`: resolve a route
(:mod:`.routes`), identify the token's holder and ask the policy whether it may do the route's
operation on the route's namespace (:mod:`.gate`), then run the route's operation in its front
door (:data:`DOORS`) and send the answer the door returns.
"""

from __future__ import annotations

import dataclasses
import re

from atlas_ci.registry import (
    atlas_door,
    files_door,
    pages_door,
    routes,
    vagrant_cloud_door,
    vagrant_cloud_json,
    wire,
)
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.gate import AUTH_REQUIRED, Gate
from atlas_ci.registry.http import ConnectionServer, HTTPError, HTTPHandler
from atlas_ci.registry.identity import ANONYMOUS, Identity, presented_token
from atlas_ci.registry.model import Busy, OutOfSpace, Version
from atlas_ci.registry.request import Door
from atlas_ci.registry.sessions import Sessions, cookie_value
from atlas_ci.registry.storage import Storage

EXTENSIONS = "idempotency-key, write-check"
"""Sent as ``X-Atlas-Extensions`` on every answer: what this registry adds to the Atlas API
(docs/atlas-wire.md, sections 11 and 12)."""

DOORS: dict[str, Door] = {
    "atlas": atlas_door.DOOR,
    "files": files_door.DOOR,
    "pages": pages_door.DOOR,
    "vagrant_cloud": vagrant_cloud_door.DOOR,
}
"""Every front door by the name the route table gives it."""

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


class RegistryHandler(HTTPHandler):
    """One connection to the registry; the :class:`~.request.Request` its doors see."""

    server: RegistryServer
    always_headers = (("X-Atlas-Extensions", EXTENSIONS),)
    door = ""
    """The front door of the request being answered ("" until it is routed)."""

    def loggable_target(self, target: str) -> str:
        return routes.loggable_target(*routes.split_target(target))

    def error_body(self, *errors: str) -> object:
        if self.door == "vagrant_cloud":
            return vagrant_cloud_json.errors_json(*errors)
        return super().error_body(*errors)

    def respond(self) -> None:
        self.identity = ANONYMOUS
        self.door = ""
        try:
            self._route()
        except wire.BadRequest as exc:
            raise HTTPError(exc.status, str(exc)) from None
        except OutOfSpace:
            self.out_of_space()
        except Busy as exc:
            raise HTTPError(503, str(exc), headers={"Retry-After": "1"}) from None

    def _route(self) -> None:
        raw_segments, query = routes.split_target(self.path)
        try:
            html = routes.wants_html(self.headers.get("Accept"))
            route = routes.resolve(self.command, raw_segments, query, html=html)
        except HTTPError:
            if raw_segments[:1] == ["api"] and self._identify().anonymous:
                # No token, no hint at which endpoints exist.
                raise HTTPError(401, AUTH_REQUIRED) from None
            raise
        self.door = route.door  # from here on, an error is in the route's API's shape
        gate = self.server.gate
        if route.access == "upload_url":  # the upload URL is its own credential
            self.identity = gate.upload_holder(route.params["secret"])
        else:
            self.identity = self._identify(route)
            gate.authorize(self.identity, route)
        self.send_answer(DOORS[route.door][route.name](self, route))

    def _identify(self, route: routes.Route | None = None) -> Identity:
        # Each header once: a proxy in front could act on the other copy.
        token = presented_token(self.header("X-Atlas-Token"), self.header("Authorization"))
        gate = self.server.gate
        if token is None and route is not None and self._session_counts(route):
            cookie = cookie_value(self.header("Cookie"))
            found = None if cookie is None else gate.session_identity(cookie)
            return found or ANONYMOUS  # an ended session is no error: the pages show as public
        return gate.identify(token)

    def _session_counts(self, route: routes.Route) -> bool:
        """A web page session signs in reads (GET, HEAD: the pages and the downloads they link)
        and the pages' own forms; never an API write, whatever a browser is made to send."""
        return self.command in ("GET", "HEAD") or route.door == "pages"

    # -- what a door sees (request.Request) ----------------------------------------------------

    @property
    def storage(self) -> Storage:
        return self.server.storage

    def read_json(self) -> object:
        body = super().read_json()
        wire.check_text(body)
        return body

    def public_base(self) -> str:
        if self.server.config.public_url:
            return self.server.config.public_url.rstrip("/")
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.fullmatch(host):
            host = self.server.host_port
        return f"http://{host}"

    def authorize_write(self, user: str) -> None:
        self.server.gate.authorize_write(self.identity, user)

    def resumable(self, found: list[Version]) -> list[Version]:
        return self.server.gate.resumable(self.identity, found)

    @property
    def sessions(self) -> Sessions:
        return self.server.gate.sessions


class RegistryServer(ConnectionServer):
    """The registry on one address: its storage, accounts and gate, a thread per connection."""

    def __init__(self, address: tuple[str, int], storage: Storage, config: Config) -> None:
        self.storage = storage
        self.accounts = Accounts(storage)
        self.config = config
        self.gate = Gate(config.tokens, self.accounts, storage)
        super().__init__(
            address,
            RegistryHandler,
            read_timeout=config.timeout,
            header_timeout=config.header_timeout,
            max_connections=config.max_connections,
        )
