"""The Vagrant Cloud API's front door: what Packer's ``vagrant-cloud`` post-processor and
``vagrant cloud`` call (``shared/docs/vagrant-cloud-wire.md``).

Each operation parses its request (:mod:`.vagrant_cloud_requests`), calls one operation of the
box service (:mod:`.boxes`, which decides access with :func:`.policy.decide` for the asker) and
answers with :mod:`.vagrant_cloud_json`'s objects; the service's refusals become the status
:func:`.boxes.status_of` gives them, once for every operation (:data:`DOOR`). Every success is
exactly 200: Packer takes anything else, a 201 included, for a failure. Errors are
``{"errors": [...], "success": false}`` (the server sends this door's errors in that shape).

Uploads. ``GET .../upload`` hands out ``{base}/binstore/box/{secret}``: the box is PUT there
(Packer sends its token and ``Content-Type: application/json`` along: the body is streamed to
disk, never parsed). ``GET .../upload/direct`` hands out the same URL and a callback,
``/api/v1/box/.../provider/{p}/upload/direct/complete/{id}``: Vagrant drops a callback URL's
host and query and keeps its path, so the path alone says which upload it completes.
"""

from __future__ import annotations

import logging

from atlas_ci.registry import receiving
from atlas_ci.registry import vagrant_cloud_json as rep
from atlas_ci.registry import vagrant_cloud_requests as parse
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.box_model import Box, BoxProvider, BoxVersion
from atlas_ci.registry.boxes import Boxes, status_of
from atlas_ci.registry.http import Answer, FileAnswer, HTTPError, JsonAnswer
from atlas_ci.registry.model import Busy, OutOfSpace, StorageError
from atlas_ci.registry.request import Door, Operation, Request
from atlas_ci.registry.routes import Route

log = logging.getLogger("atlas_ci.registry")

SEARCH_VERSIONS = 10
"""Versions listed with each search result (``vagrant cloud search`` shows the current one;
``GET /box/{u}/{n}`` lists them all, as Packer looks for its version there)."""

NO_PASSWORDS = (
    "this registry has no passwords: ask its administrator for a token "
    "(atlas-ci registry token create --user NAME) and set VAGRANT_CLOUD_TOKEN to it"
)


def _boxes(request: Request) -> Boxes:
    return Boxes(request.storage, Accounts(request.storage))


def _ok(payload: object) -> Answer:
    return JsonAnswer(200, payload)


def _box_answer(request: Request, box: Box) -> Answer:
    boxes = _boxes(request)
    versions = boxes.versions(request.identity, box.user, box.name)
    current = next((v for v in versions if v.status == "active"), None)
    return _ok(rep.box_json(request.public_base(), box, versions, current))


def _version_answer(request: Request, version: BoxVersion) -> Answer:
    return _ok(rep.version_json(request.public_base(), version))


def _names(route: Route) -> tuple[str, str]:
    return route.params["user"], route.params["name"]


def _version_names(route: Route) -> tuple[str, str, str]:
    return route.params["user"], route.params["name"], route.params["version"]


# -- accounts and search -----------------------------------------------------------------------


def login(request: Request, route: Route) -> Answer:
    """``POST /authenticate`` (``vagrant cloud auth login`` with a password): none here."""
    raise HTTPError(400, NO_PASSWORDS)


def user(request: Request, route: Route) -> Answer:
    """``GET /user/{owner}``: the boxes of a user or organization the asker may read."""
    owner = route.params["owner"]
    boxes = _boxes(request)
    listed = [
        (box, boxes.current_version(request.identity, box.user, box.name))
        for box in boxes.list_boxes(request.identity, owner)
    ]
    return _ok(rep.user_json(request.public_base(), owner, listed))


def search(request: Request, route: Route) -> Answer:
    """``GET /search?q=&provider=&sort=&order=&limit=&page=``: boxes the asker may read."""
    query = parse.parse_search(route.query)
    boxes = _boxes(request)
    base = request.public_base()
    found = []
    for box in boxes.search(request.identity, query):
        # Up to 100 boxes a page: each with its newest versions only, not every one it has.
        versions = boxes.versions(request.identity, box.user, box.name, SEARCH_VERSIONS)
        current = boxes.current_version(request.identity, box.user, box.name)
        found.append(rep.box_json(base, box, versions, current))
    return _ok({"boxes": found})


# -- boxes -------------------------------------------------------------------------------------


def create_box(request: Request, route: Route) -> Answer:
    """``POST /boxes``: flat ``{"username", "name", "short_description", "description",
    "is_private"}`` (or under ``"box"``)."""
    fields = parse.parse_box(request.read_json())
    if not fields.username or not fields.name:
        raise HTTPError(422, 'a new box needs "username" and "name" (the two halves of user/name)')
    box = _boxes(request).create_box(
        request.identity,
        fields.username,
        fields.name,
        short_description=fields.short_description or "",
        description=fields.description or "",
        private=fields.is_private,
    )
    return _ok(rep.box_json(request.public_base(), box, [], None))


def get_box(request: Request, route: Route) -> Answer:
    box = _boxes(request).get_box(request.identity, *_names(route))
    return _box_answer(request, box)


def update_box(request: Request, route: Route) -> Answer:
    """``PUT /box/{u}/{n}``: the descriptions and ``is_private`` given; the name stays."""
    fields = parse.parse_box(request.read_json())
    box = _boxes(request).update_box(
        request.identity,
        *_names(route),
        short_description=fields.short_description,
        description=fields.description,
        private=fields.is_private,
    )
    return _box_answer(request, box)


def delete_box(request: Request, route: Route) -> Answer:
    """``DELETE /box/{u}/{n}``: answers the box as it was."""
    boxes = _boxes(request)
    box = boxes.get_box(request.identity, *_names(route))
    answer = _box_answer(request, box)
    boxes.delete_box(request.identity, *_names(route))
    return answer


# -- versions ----------------------------------------------------------------------------------


def create_version(request: Request, route: Route) -> Answer:
    """``POST .../versions``: ``{"version": {"version", "description"}}``; ``unreleased``."""
    fields = parse.parse_version(request.read_json())
    if fields.version is None:
        raise HTTPError(422, 'a new version needs version.version, such as "1.2.0"')
    version = _boxes(request).create_version(
        request.identity, *_names(route), fields.version, description=fields.description or ""
    )
    return _version_answer(request, version)


def get_version(request: Request, route: Route) -> Answer:
    version = _boxes(request).get_version(request.identity, *_version_names(route))
    return _version_answer(request, version)


def update_version(request: Request, route: Route) -> Answer:
    fields = parse.parse_version(request.read_json())
    version = _boxes(request).update_version(
        request.identity,
        *_version_names(route),
        new_version=fields.version,
        description=fields.description,
    )
    return _version_answer(request, version)


def delete_version(request: Request, route: Route) -> Answer:
    boxes = _boxes(request)
    version = boxes.get_version(request.identity, *_version_names(route))
    boxes.delete_version(request.identity, *_version_names(route))
    return _version_answer(request, version)


def release(request: Request, route: Route) -> Answer:
    """``PUT .../release`` (empty body): ``active``."""
    version = _boxes(request).release_version(request.identity, *_version_names(route))
    return _version_answer(request, version)


def revoke(request: Request, route: Route) -> Answer:
    """``PUT .../revoke`` (empty body): ``revoked``."""
    version = _boxes(request).revoke_version(request.identity, *_version_names(route))
    return _version_answer(request, version)


# -- providers ---------------------------------------------------------------------------------


def _provider_names(route: Route) -> tuple[str, str, str, str]:
    params = route.params
    return params["user"], params["name"], params["version"], params["provider"]


def _provider_answer(request: Request, route: Route, provider: BoxProvider) -> Answer:
    version = _boxes(request).get_version(request.identity, *_version_names(route))
    return _ok(rep.provider_json(request.public_base(), version, provider))


def create_provider(request: Request, route: Route) -> Answer:
    """``POST .../providers``: ``{"provider": {"name", "url"?, "checksum"?, "checksum_type"?}}``;
    a provider the version has already is 422."""
    fields = parse.parse_provider(request.read_json())
    if not fields.name:
        raise HTTPError(422, 'a new provider needs provider.name, such as "virtualbox"')
    provider = _boxes(request).create_provider(
        request.identity,
        *_version_names(route),
        fields.name,
        url=fields.url or None,
        checksum=fields.checksum or None,
        checksum_type=fields.checksum_type or None,
    )
    return _provider_answer(request, route, provider)


def _existing_provider(request: Request, route: Route) -> tuple[BoxVersion, BoxProvider]:
    user, name, version, provider = _provider_names(route)
    found = _boxes(request).get_version(request.identity, user, name, version)
    named = found.provider(provider)
    if named is None:
        raise HTTPError(404, f"box {user}/{name} version {version} has no provider {provider}")
    return found, named


def get_provider(request: Request, route: Route) -> Answer:
    version, provider = _existing_provider(request, route)
    return _ok(rep.provider_json(request.public_base(), version, provider))


def update_provider(request: Request, route: Route) -> Answer:
    fields = parse.parse_provider(request.read_json())
    provider = _boxes(request).update_provider(
        request.identity,
        *_provider_names(route),
        new_name=fields.name,
        url=fields.url,
        checksum=fields.checksum,
        checksum_type=fields.checksum_type,
    )
    return _provider_answer(request, route, provider)


def delete_provider(request: Request, route: Route) -> Answer:
    version, provider = _existing_provider(request, route)
    _boxes(request).delete_provider(request.identity, *_provider_names(route))
    return _ok(rep.provider_json(request.public_base(), version, provider))


# -- files -------------------------------------------------------------------------------------


def _upload_path(request: Request, secret: str) -> str:
    return f"{request.public_base()}/binstore/box/{secret}"


def upload_url(request: Request, route: Route) -> Answer:
    """``GET .../upload``: ``{"upload_path"}``, PUT the box there (no callback)."""
    target = _boxes(request).upload_target(request.identity, *_provider_names(route))
    return _ok({"upload_path": _upload_path(request, target.secret)})


def direct_upload_url(request: Request, route: Route) -> Answer:
    """``GET .../upload/direct``: ``{"upload_path", "callback"}``: PUT the box, then the
    callback (with the token, empty body)."""
    target = _boxes(request).upload_target(request.identity, *_provider_names(route))
    base = request.public_base()
    callback = f"{base}{rep.provider_path(*_provider_names(route))}/upload/direct/complete"
    return _ok(
        {
            "upload_path": _upload_path(request, target.secret),
            "callback": f"{callback}/{target.callback}",
        }
    )


def complete_upload(request: Request, route: Route) -> Answer:
    """``PUT <callback>``: the direct upload's box has arrived; it becomes the provider's."""
    provider = _boxes(request).complete_upload(
        request.identity, *_provider_names(route), route.params["callback"]
    )
    return _provider_answer(request, route, provider)


def receive_box(request: Request, route: Route) -> Answer:
    """``PUT /binstore/box/{secret}``: the box, streamed to disk whatever its Content-Type (Packer
    says ``application/json``); a body cut short leaves the provider without a file (400)."""
    length = request.content_length
    if length is None:
        raise HTTPError(411, "Content-Length is required: PUT the box with its size")
    boxes = _boxes(request)
    upload = boxes.begin_upload(route.params["secret"])
    try:
        with receiving.storing("box"):
            receiving.receive(request, upload, length, "box")
            provider = boxes.finish_upload(upload)
    finally:
        upload.abort()
    return _ok({"checksum": provider.sha256, "checksum_type": "sha256", "size": provider.size})


def download(request: Request, route: Route) -> Answer:
    """``GET .../provider/{p}/download``: the hosted box (any status, to those who may read);
    a whole GET counts one download of the box."""
    boxes = _boxes(request)
    found = boxes.open_file(request.identity, *_provider_names(route))
    try:
        blob = found.path.open("rb", buffering=0)
    except FileNotFoundError:
        log.error("the box file %s is missing", found.path)
        raise HTTPError(500, "the box file is missing from storage") from None
    user, name = _names(route)
    return FileAnswer(
        blob, found.size, found.sha256, on_sent=lambda: boxes.count_download(user, name)
    )


def _answering(operation: Operation) -> Operation:
    """``operation`` with the box service's refusals answered as its status says
    (:func:`.boxes.status_of`); a full disk and a busy database are the server's to answer."""

    def answer(request: Request, route: Route) -> Answer:
        try:
            return operation(request, route)
        except (OutOfSpace, Busy):
            raise
        except StorageError as exc:
            raise HTTPError(status_of(exc), str(exc)) from None

    return answer


_OPERATIONS: dict[str, Operation] = {
    "login": login,
    "user": user,
    "search": search,
    "create_box": create_box,
    "get_box": get_box,
    "update_box": update_box,
    "delete_box": delete_box,
    "create_version": create_version,
    "get_version": get_version,
    "update_version": update_version,
    "delete_version": delete_version,
    "release": release,
    "revoke": revoke,
    "create_provider": create_provider,
    "get_provider": get_provider,
    "update_provider": update_provider,
    "delete_provider": delete_provider,
    "upload_url": upload_url,
    "direct_upload_url": direct_upload_url,
    "complete_upload": complete_upload,
    "receive_box": receive_box,
    "download": download,
}
DOOR: Door = {name: _answering(operation) for name, operation in _OPERATIONS.items()}
