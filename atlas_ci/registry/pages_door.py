"""The web pages' front door: what a person sees of the registry in a browser.

``/`` (boxes and namespaces, with the API's search), ``/{user}`` (a namespace's boxes and other
artifacts), ``/{user}/{name}`` when the browser asks for HTML (a box: versions, statuses,
providers, the lines to use it; ``Accept: application/json`` keeps Vagrant's catalog there),
``/{user}/{name}/{type}`` (an artifact's versions and what Terraform reads), and sign-in and
sign-out under ``/-/``. Every listing and lookup goes through the box service and the storage
with the asker's identity, so the pages show exactly what the APIs would give the same token:
this door decides no access. Pages change nothing but sessions (sign-in, sign-out), whose forms
are refused unless they come from the registry's own pages (``Origin``, and the cookie is
``SameSite=Strict``).
"""

from __future__ import annotations

import re
import urllib.parse

from atlas_ci.registry import pages_html, vagrant
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.box_model import BoxQuery, BoxVersion
from atlas_ci.registry.boxes import Boxes, status_of
from atlas_ci.registry.http import Answer, BodyAnswer
from atlas_ci.registry.identity import Unauthenticated
from atlas_ci.registry.model import NotFound, StorageError
from atlas_ci.registry.request import Door, Request
from atlas_ci.registry.routes import Route
from atlas_ci.registry.sessions import COOKIE, LIFETIME, cookie_value

HOME_LIMIT = 100
"""Boxes listed on ``/`` (the search's own maximum); a search narrows them down."""
NAMESPACE_LIMIT = 500
"""Boxes listed on a namespace's page (by name); the search finds the others."""
VERSIONS_SHOWN = 50
"""Versions listed on a box or artifact page, newest first."""
_STATUS_WORDS = {"active": "released", "unreleased": "unreleased", "revoked": "revoked"}
_TF_NAME = re.compile(r"[^a-z0-9_]+")


def _page(request: Request, template: str, code: int = 200, **context: object) -> Answer:
    identity = request.identity
    body = pages_html.render(
        template,
        viewer=None if identity.anonymous else identity.name,
        **context,
    )
    return BodyAnswer(code, "text/html; charset=utf-8", body, dict(pages_html.SECURITY_HEADERS))


def _failed(request: Request, exc: StorageError) -> Answer:
    status = status_of(exc)
    # The policy's 401 speaks to API clients (which header to send); a person signs in.
    message = _SIGN_IN_NEEDED if status == 401 else str(exc)
    return _page(request, "error.html", status, status=status, message=message)


def _boxes(request: Request) -> Boxes:
    return Boxes(request.storage, Accounts(request.storage))


def home(request: Request, route: Route) -> Answer:
    """The boxes the viewer may read, newest activity first; ``?q=`` searches them."""
    query = urllib.parse.parse_qs(route.query).get("q", [""])[0]
    try:
        found = _boxes(request).search(
            request.identity, BoxQuery(q=query, sort="updated", limit=HOME_LIMIT)
        )
    except StorageError as exc:
        return _failed(request, exc)
    namespaces = sorted({box.user for box in found} | set(request.identity.roles))
    return _page(
        request, "home.html", boxes=found, namespaces=[] if query else namespaces, query=query
    )


def namespace(request: Request, route: Route) -> Answer:
    """A user's or organization's boxes and artifacts the viewer may read."""
    owner = route.params["user"]
    try:
        found = _boxes(request).list_boxes(request.identity, owner)
    except StorageError as exc:
        return _failed(request, exc)
    kind = Accounts(request.storage).kind(owner)
    if kind is None and not found:  # the service lists nothing, not even for an administrator
        return _failed(request, NotFound(f"no user or organization named {owner!r}"))
    return _page(
        request,
        "namespace.html",
        owner=owner,
        kind=kind or "namespace",
        boxes=found[:NAMESPACE_LIMIT],
        more=max(0, len(found) - NAMESPACE_LIMIT),
    )


def box(request: Request, route: Route) -> Answer:
    """A box: its description, versions newest first with their providers, how to use it."""
    user, name = route.params["user"], route.params["name"]
    boxes = _boxes(request)
    try:
        found = boxes.get_box(request.identity, user, name)
        versions = boxes.versions(request.identity, user, name, VERSIONS_SHOWN)
    except StorageError as exc:
        return _failed(request, exc)
    current = next((v for v in versions if v.status == "active"), None)
    return _page(
        request,
        "box.html",
        box=found,
        versions=[_version_view(v) for v in versions],
        more=len(versions) == VERSIONS_SHOWN,
        current=current,
        server_url=request.public_base(),
        types=request.storage.artifact_types(user, name),
    )


def _version_view(version: BoxVersion) -> dict[str, object]:
    """What the box page shows of a version: its status in words and each provider's link."""
    providers = []
    for provider in version.providers:
        # A path on this registry for a hosted file; the publisher's url only if http(s).
        url = vagrant.download_url("", version, provider)
        href = url if provider.hosted else pages_html.safe_href(url)
        providers.append({"provider": provider, "href": href, "url": url})
    return {
        "version": version,
        "status": _STATUS_WORDS[version.status],
        "providers": providers,
    }


def artifact(request: Request, route: Route) -> Answer:
    """An artifact type's versions: id, metadata, build, creation, and what Terraform reads."""
    user, name, kind = route.params["user"], route.params["name"], route.params["type"]
    try:
        found = _boxes(request).get_box(request.identity, user, name)
    except StorageError as exc:
        return _failed(request, exc)
    versions = request.storage.newest_versions(user, name, kind, VERSIONS_SHOWN)
    return _page(
        request,
        "artifact.html",
        box=found,
        type=kind,
        versions=versions,
        more=len(versions) == VERSIONS_SHOWN,
        latest=versions[0] if versions else None,
        tf_name=_TF_NAME.sub("_", name.lower()).strip("_") or "artifact",
        server_url=request.public_base(),
    )


_ASSET_HEADERS = {
    "Cache-Control": "max-age=300",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": pages_html.CSP,  # an SVG opened on its own runs nothing either
}


def stylesheet(request: Request, route: Route) -> Answer:
    return BodyAnswer(200, "text/css; charset=utf-8", pages_html.stylesheet(), _ASSET_HEADERS)


def icon(request: Request, route: Route) -> Answer:
    return BodyAnswer(200, "image/svg+xml", pages_html.icon(), _ASSET_HEADERS)


def sign_in_form(request: Request, route: Route) -> Answer:
    return _page(request, "sign_in.html", error=None)


def _same_origin(request: Request) -> bool:
    """The form was posted by a page of this registry: its ``Origin`` is the registry's."""
    origin = request.header("Origin")
    base = urllib.parse.urlsplit(request.public_base())
    return origin is not None and origin.lower() == f"{base.scheme}://{base.netloc}".lower()


def _cookie(request: Request, value: str, max_age: int) -> str:
    secure = "; Secure" if request.public_base().lower().startswith("https://") else ""
    return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"


def _see_other(location: str, cookie: str) -> Answer:
    headers = {**pages_html.SECURITY_HEADERS, "Location": location, "Set-Cookie": cookie}
    return BodyAnswer(303, "text/plain; charset=utf-8", b"", headers)


def sign_in(request: Request, route: Route) -> Answer:
    """The token field's token becomes a session cookie; the token is never shown again."""
    if not _same_origin(request):
        return _page(request, "error.html", 403, status=403, message=_CROSS_SITE)
    token = request.read_form().get("token", "").strip()
    try:
        cookie, identity = request.sessions.start(token)
    except Unauthenticated as exc:
        return _page(request, "sign_in.html", 401, error=str(exc))
    request.note = f"signed in: {identity.name}"
    return _see_other("/", _cookie(request, cookie, int(LIFETIME.total_seconds())))


def sign_out(request: Request, route: Route) -> Answer:
    """The session ends on the server, and the browser forgets the cookie."""
    if not _same_origin(request):
        return _page(request, "error.html", 403, status=403, message=_CROSS_SITE)
    cookie = cookie_value(request.header("Cookie"))
    if cookie is not None:
        request.sessions.end(cookie)
    request.note = "signed out"
    return _see_other("/", _cookie(request, "", 0))


_SIGN_IN_NEEDED = "this page is not public: sign in with a token that may read it"
_CROSS_SITE = "this form is only accepted from the registry's own pages"

DOOR: Door = {
    "home": home,
    "namespace": namespace,
    "box": box,
    "artifact": artifact,
    "stylesheet": stylesheet,
    "icon": icon,
    "sign_in_form": sign_in_form,
    "sign_in": sign_in,
    "sign_out": sign_out,
}
