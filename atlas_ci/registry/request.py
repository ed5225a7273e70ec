"""What a front door sees of the request it answers, and what a door is.

A door is a mapping from its operation names (the :data:`.routes.ROUTES` rows name them) to
functions ``(request, route) -> answer``. It reads the request through :class:`Request` only: no
socket, no framing, no access decision of its own beyond the two questions the request answers
(:meth:`Request.authorize_write`, :meth:`Request.resumable`), which the gate decides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from atlas_ci.registry.http import Answer, BodySink, HTTPError
from atlas_ci.registry.identity import Identity
from atlas_ci.registry.model import Artifact, Version
from atlas_ci.registry.routes import Route
from atlas_ci.registry.sessions import Sessions
from atlas_ci.registry.storage import Storage


class Request(Protocol):
    """One request, parsed, framed and admitted, as a door may use it."""

    identity: Identity
    """Who asks (admitted by the gate for the route's access)."""
    content_length: int | None
    command: str
    """The method (``HEAD`` is answered as ``GET`` without the body)."""
    note: str
    """Appended to the request's access-log line, in parentheses."""

    @property
    def storage(self) -> Storage: ...

    def header(self, name: str) -> str | None:
        """A header that may be sent once (None when absent); 400 when sent twice."""
        ...

    @property
    def sessions(self) -> Sessions:
        """The web pages' sign-in sessions (the pages door signs in and out with them)."""
        ...

    def read_form(self) -> dict[str, str]:
        """A url-encoded form body, each field's first value (413 over 16 KiB)."""
        ...

    def read_json(self) -> object:
        """The body as JSON (413 over 1 MiB, 422 when it does not parse or holds no text)."""
        ...

    def stream_body(self, sink: BodySink, length: int) -> int:
        """Hand ``length`` body bytes to ``sink`` as they arrive; what it took (short: cut)."""
        ...

    def public_base(self) -> str:
        """The registry's base URL as the client reaches it (``--public-url`` or its Host)."""
        ...

    def authorize_write(self, user: str) -> None:
        """Raise the refusal, if any, of a write into namespace ``user`` (named by a body)."""
        ...

    def resumable(self, found: list[Version]) -> list[Version]:
        """The pending versions of ``found`` whose upload URL the asker may be handed again."""
        ...


Operation = Callable[[Request, Route], Answer]
Door = Mapping[str, Operation]


def existing_artifact(request: Request, route: Route) -> Artifact:
    """The artifact the route's ``user`` and ``name`` name; 404 when there is none."""
    user, name = route.params["user"], route.params["name"]
    artifact = request.storage.get_artifact(user, name)
    if artifact is None:
        raise HTTPError(404, f"artifact {user}/{name} not found")
    return artifact
