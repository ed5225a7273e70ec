"""The route table of every API the registry serves, and the request target as the log shows it.

A request's method and path resolve to an :class:`Endpoint` (which front door answers, which of
its operations, what access the policy is asked for) and the path's parameters, decoded. A new
API is new rows in :data:`ROUTES` and a door module listed in :data:`.server.DOORS`; nothing
else changes.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from typing import Literal

from atlas_ci.registry import policy
from atlas_ci.registry.http import HTTPError, printable

Access = Literal["read", "write", "token", "upload_url", "public"]
"""What is checked before the door runs: ``read`` or ``write`` is the policy's operation on the
namespace the path names (``write`` with no namespace in the path: the door asks again once the
body names it); ``token``: any authenticated token; ``upload_url``: the path's secret is the
credential; ``public``: nothing before the door (its service decides for the asker it is given:
a listing, a search, a box PUT whose upload URL the box service checks, every web page, whose
every listing and lookup asks the services with the viewer's identity)."""

PAGE = "GET text/html"
"""The key of the endpoint a browser's GET or HEAD reaches: one whose ``Accept`` prefers HTML
(:func:`wants_html`). Where a path also answers ``GET`` (Vagrant's catalog), every other GET gets
that; where it has only a page, every other request goes on as if the row were not there (an API
client still gets the 404 it always got)."""
_NOT_NAMESPACES = frozenset({"api", "binstore", "-"})
"""First path segments that are never a namespace: no web page route matches under them (an
unknown ``/api/...`` path stays the API's 401 or 404)."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """What answers one method on one path: a door, its operation, the access checked first."""

    door: str
    name: str
    access: Access


@dataclasses.dataclass(frozen=True)
class Route:
    """A resolved request: its endpoint and the path's parameters, decoded."""

    endpoint: Endpoint
    params: Mapping[str, str]
    query: str

    @property
    def name(self) -> str:
        return self.endpoint.name

    @property
    def door(self) -> str:
        return self.endpoint.door

    @property
    def access(self) -> Access:
        return self.endpoint.access

    @property
    def operation(self) -> policy.Operation | None:
        """What the route does to the artifact it names, for the policy (None: no artifact)."""
        access = self.endpoint.access
        return access if access in ("read", "write") else None


def _atlas(name: str, access: Access) -> Endpoint:
    return Endpoint("atlas", name, access)


def _files(name: str) -> Endpoint:
    return Endpoint("files", name, "read")


def _vc(name: str, access: Access) -> Endpoint:
    return Endpoint("vagrant_cloud", name, access)


_BOX = ("api", "v1", "box", "{user}", "{name}")
_VERSION = (*_BOX, "version", "{version}")
_PROVIDER = (*_VERSION, "provider", "{provider}")

# The Vagrant Cloud API (shared/docs/vagrant-cloud-wire.md); the box service decides access
# again for each operation, "public" rows (no namespace in the path) only there.
_VAGRANT_CLOUD: tuple[tuple[tuple[str, ...], dict[str, Endpoint]], ...] = (
    (("api", "v1", "user", "{owner}"), {"GET": _vc("user", "public")}),
    (("api", "v1", "search"), {"GET": _vc("search", "public")}),
    (("api", "v1", "boxes"), {"POST": _vc("create_box", "write")}),
    (
        _BOX,
        {
            "GET": _vc("get_box", "read"),
            "PUT": _vc("update_box", "write"),
            "DELETE": _vc("delete_box", "write"),
        },
    ),
    ((*_BOX, "versions"), {"POST": _vc("create_version", "write")}),
    (
        _VERSION,
        {
            "GET": _vc("get_version", "read"),
            "PUT": _vc("update_version", "write"),
            "DELETE": _vc("delete_version", "write"),
        },
    ),
    ((*_VERSION, "release"), {"PUT": _vc("release", "write")}),
    ((*_VERSION, "revoke"), {"PUT": _vc("revoke", "write")}),
    ((*_VERSION, "providers"), {"POST": _vc("create_provider", "write")}),
    (
        _PROVIDER,
        {
            "GET": _vc("get_provider", "read"),
            "PUT": _vc("update_provider", "write"),
            "DELETE": _vc("delete_provider", "write"),
        },
    ),
    ((*_PROVIDER, "upload"), {"GET": _vc("upload_url", "write")}),
    ((*_PROVIDER, "upload", "direct"), {"GET": _vc("direct_upload_url", "write")}),
    (
        (*_PROVIDER, "upload", "direct", "complete", "{callback}"),
        {"PUT": _vc("complete_upload", "write")},
    ),
    ((*_PROVIDER, "download"), {"GET": _vc("download", "read")}),
    (("binstore", "box", "{secret}"), {"PUT": _vc("receive_box", "public")}),
)


def _page(name: str) -> Endpoint:
    return Endpoint("pages", name, "public")


# (path template, method -> endpoint). "{x}" captures one decoded segment; the first template
# that matches the path wins.
ROUTES: tuple[tuple[tuple[str, ...], dict[str, Endpoint]], ...] = (
    (
        ("api", "v1", "authenticate"),
        {"GET": _atlas("authenticate", "token"), "POST": _vc("login", "public")},
    ),
    (("api", "v1", "artifacts"), {"POST": _atlas("create_artifact", "write")}),
    # The write-check extension (atlas-wire §12): may this token write into the namespace?
    (
        ("api", "v1", "namespaces", "{user}", "write-access"),
        {"GET": _atlas("write_access", "write")},
    ),
    (("api", "v1", "artifacts", "{user}", "{name}"), {"GET": _atlas("get_artifact", "read")}),
    (
        ("api", "v1", "artifacts", "{user}", "{name}", "{type}"),
        {"POST": _atlas("create_version", "write")},
    ),
    (
        ("api", "v1", "artifacts", "{user}", "{name}", "{type}", "search"),
        {"GET": _atlas("search", "read")},
    ),
    (
        ("api", "v1", "artifacts", "{user}", "{name}", "{type}", "file"),
        {"GET": _files("latest_file")},
    ),
    (
        ("api", "v1", "artifacts", "{user}", "{name}", "{type}", "{version}", "file"),
        {"GET": _files("version_file")},
    ),
    (("binstore", "{secret}"), {"PUT": _atlas("upload", "upload_url")}),
    *_VAGRANT_CLOUD,
    # The web pages' own paths under "/-/", which no namespace can take.
    (("-", "style.css"), {"GET": _page("stylesheet")}),
    (("-", "icon.svg"), {"GET": _page("icon")}),
    (("-", "sign-in"), {"GET": _page("sign_in_form"), "POST": _page("sign_in")}),
    (("-", "sign-out"), {"POST": _page("sign_out")}),
    ((), {PAGE: _page("home")}),
    (("{user}",), {PAGE: _page("namespace")}),
    # Vagrant's box catalog, or a browser's box page; after every literal route ("api",
    # "binstore" are reserved names).
    (("{user}", "{name}"), {"GET": _files("box_catalog"), PAGE: _page("box")}),
    (("{user}", "{name}", "{type}"), {PAGE: _page("artifact")}),
)


def split_target(target: str) -> tuple[list[str], str]:
    """The raw (still escaped) non-empty path segments and the query of a request target."""
    if target.startswith(("http://", "https://")):  # absolute-form, as sent to a proxy
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return [segment for segment in path.split("/") if segment], query


def wants_html(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers a web page: ``text/html`` (or XHTML) named with a
    weight above 0 and above ``application/json``'s. A browser's does; Vagrant's, curl's and
    every API client's do not (``*/*`` alone is not a preference for HTML)."""
    html = json = 0.0
    for item in (accept or "").split(",")[:64]:
        kind, *params = (part.strip().lower() for part in item.split(";"))
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if kind in ("text/html", "application/xhtml+xml"):
            html = max(html, weight)
        elif kind == "application/json":
            json = max(json, weight)
    return html > 0 and html > json


def resolve(method: str, raw_segments: list[str], query: str, *, html: bool = False) -> Route:
    """Match a request to a route (``html``: its Accept prefers a page, see :data:`PAGE`);
    :class:`HTTPError` 404 or 405 when none fits."""
    try:
        segments = [urllib.parse.unquote(s, errors="strict") for s in raw_segments]
    except UnicodeDecodeError:
        raise HTTPError(400, "the path is not valid UTF-8 once unescaped") from None
    if any("\x00" in segment for segment in segments):
        # PostgreSQL cannot hold a NUL in text, so no backend is asked about one: every name
        # is refused the same way on both, before any lookup.
        raise HTTPError(400, "a path segment holds a NUL character (%00)")
    lookup = "GET" if method == "HEAD" else method
    for template, methods in ROUTES:
        if len(template) != len(segments):
            continue
        if segments and segments[0].lower() in _NOT_NAMESPACES and template[0].startswith("{"):
            continue
        params: dict[str, str] = {}
        for pattern, segment in zip(template, segments, strict=True):
            if pattern.startswith("{"):
                params[pattern[1:-1]] = segment
            elif pattern != segment:
                break
        else:
            if lookup == "GET" and html and PAGE in methods:
                return Route(methods[PAGE], params, query)
            routed = {m for m in methods if m != PAGE}
            if not routed:
                continue  # a web page only, and this request does not ask for one
            if lookup not in methods:
                allowed = sorted(routed | ({"HEAD"} if "GET" in routed else set()))
                raise HTTPError(
                    405,
                    f"{method} is not allowed here; use {', '.join(allowed)}",
                    headers={"Allow": ", ".join(allowed)},
                )
            return Route(methods[lookup], params, query)
    raise HTTPError(404, f"no such endpoint: {method} /{'/'.join(raw_segments)}")


def loggable_target(raw_segments: list[str], query: str) -> str:
    """The request target for the access log: printable, one line, upload secrets cut.

    Everything from the first segment that names ``binstore``, however escaped or cased
    (``%62instore``, ``binstore%2F<secret>``, ``BINSTORE``), is cut, query included: the
    upload route treats what follows it as a credential, and a client that escaped it oddly
    still sent its secret. Cutting a path that was no upload costs only a less useful line.
    """
    for index, segment in enumerate(raw_segments):
        decoded = _unescaped(segment).lower()
        if "binstore" in decoded:
            shown = raw_segments[index] if decoded == "binstore" else "<redacted>"
            return printable("/" + "/".join([*raw_segments[:index], shown, "<redacted>"]))
    if _is_callback(raw_segments):
        # A direct upload's callback id: no credential alone, but kept out of the log too.
        return printable("/" + "/".join([*raw_segments[:-1], "<redacted>"]))
    target = "/" + "/".join(raw_segments)
    if query:
        redacted = "binstore" in _unescaped(query).lower()
        target += "?" + ("<redacted>" if redacted else _loggable_query(query))
    return printable(target)


def _is_callback(raw_segments: list[str]) -> bool:
    tail = [urllib.parse.unquote(s).lower() for s in raw_segments[-4:-1]]
    return tail == ["upload", "direct", "complete"]


def _unescaped(text: str) -> str:
    """``text`` percent-decoded until it stops changing (a few rounds at most): the log must
    recognise ``%2562`` as well as ``%62`` and ``b``."""
    for _ in range(4):
        decoded = urllib.parse.unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


_LOGGED_PARAMS = re.compile(r"version|build|include_pending|metadata\.[0-9]+\.(key|value)")


def _loggable_query(query: str) -> str:
    """The query with the value of every parameter this registry does not read cut out: a
    client may send its credential there (Vagrant Cloud's ``access_token``, a signed URL)."""
    pieces = []
    for piece in query.split("&"):
        name, sep, _value = piece.partition("=")
        if sep and not _LOGGED_PARAMS.fullmatch(urllib.parse.unquote_plus(name)):
            piece = f"{name}=<redacted>"
        pieces.append(piece)
    return "&".join(pieces)
