"""The Atlas v1 API's front door: authenticate, artifacts, versions, search and the file PUT.

What Packer's ``atlas`` post-processor, atlas-go, Terraform's ``atlas_artifact`` and the uploader
call (docs/atlas-wire.md). Each operation parses its request with :mod:`.wire`, calls storage and
answers with :mod:`.wire`'s JSON; access was decided before it runs (:mod:`.gate`).
"""

from __future__ import annotations

import secrets

from atlas_ci.registry import receiving, vagrant, wire
from atlas_ci.registry.accounts import Accounts
from atlas_ci.registry.boxes import Boxes
from atlas_ci.registry.http import Answer, HTTPError, JsonAnswer
from atlas_ci.registry.model import Conflict, Invalid, NotFound
from atlas_ci.registry.request import Door, Request, existing_artifact
from atlas_ci.registry.routes import Route


def _upload_path(request: Request, secret: str | None) -> str | None:
    return None if secret is None else f"{request.public_base()}/binstore/{secret}"


def authenticate(request: Request, route: Route) -> Answer:
    identity = request.identity
    user = {
        "username": identity.name,
        "authenticated": True,
        "admin": identity.admin,
        "read_only": identity.read_only,
    }
    return JsonAnswer(200, {"user": user})


def write_access(request: Request, route: Route) -> Answer:
    """The write-check extension (docs/atlas-wire.md, section 12). Reached only when the gate
    allowed a write into the namespace: a refusal is the 401 or 403, with its reason, that a
    real write there would get."""
    return JsonAnswer(200, {"namespace": route.params["user"], "write": True})


def get_artifact(request: Request, route: Route) -> Answer:
    return JsonAnswer(200, wire.artifact_json(existing_artifact(request, route)))


def create_artifact(request: Request, route: Route) -> Answer:
    new = wire.parse_new_artifact(request.read_json())
    request.authorize_write(new.username)
    try:
        artifact = request.storage.create_artifact(new.username, new.name)
    except (Invalid, Conflict) as exc:
        raise HTTPError(422, str(exc)) from None
    return JsonAnswer(201, wire.artifact_json(artifact))


def create_version(request: Request, route: Route) -> Answer:
    key = wire.parse_idempotency_key(request.header("Idempotency-Key"))
    new = wire.parse_new_version(request.read_json())
    secret = secrets.token_urlsafe(32) if new.file else None
    try:
        landing = (
            Boxes(request.storage, Accounts(request.storage)).atlas_version_hook(new.metadata)
            if route.params["type"] == vagrant.BOX_TYPE
            else None
        )
        version = request.storage.create_version(
            route.params["user"],
            route.params["name"],
            route.params["type"],
            artifact_id=new.id,
            build_id=new.build_id,
            compile_id=new.compile_id,
            metadata=new.metadata,
            file=new.file,
            upload_secret=secret,
            idempotency_key=key,
            grantee=request.identity.grantee,
            landing=landing,
        )
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    except (Invalid, Conflict) as exc:  # Conflict: the box version has that provider already
        raise HTTPError(422, str(exc)) from None
    if key is not None:
        # Perhaps the version an earlier request with this key created: its own secret,
        # while it waits for its file; none once the file is there.
        secret = request.storage.pending_upload_secret(version)
    return JsonAnswer(201, wire.version_json(version, _upload_path(request, secret)))


def search(request: Request, route: Route) -> Answer:
    query = wire.parse_search(route.query)
    existing_artifact(request, route)
    storage = request.storage
    found = storage.search(route.params["user"], route.params["name"], route.params["type"], query)
    if not query.include_pending:
        return JsonAnswer(200, {"versions": [wire.version_json(v) for v in found]})
    # The token a pending upload was handed to may finish it: its upload_path comes back
    # (the uploader adopts a version its failed POST created this way). Nobody else,
    # a reader or another writer, sees the URL.
    resumable = {v.pk for v in request.resumable(found)}
    versions = []
    for v in found:
        secret = storage.pending_upload_secret(v) if v.pk in resumable else None
        versions.append({**wire.version_json(v, _upload_path(request, secret)), "state": v.state})
    return JsonAnswer(200, {"versions": versions, "pending_listed": True})


def upload(request: Request, route: Route) -> Answer:
    """``PUT /binstore/{secret}``: the file of a pending version, streamed to disk."""
    if request.content_length is None:
        raise HTTPError(411, "Content-Length is required: PUT the file with its size")
    try:
        pending = request.storage.begin_upload(route.params["secret"])
    except NotFound as exc:
        raise HTTPError(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    try:
        with receiving.storing("file"):
            receiving.receive(request, pending, request.content_length, "file")
            version = request.storage.finish_upload(pending)
    except Conflict as exc:
        raise HTTPError(409, str(exc)) from None
    finally:
        pending.abort()
    return JsonAnswer(200, {"slug": version.slug, "size": version.size, "sha256": version.sha256})


DOOR: Door = {
    "authenticate": authenticate,
    "write_access": write_access,
    "get_artifact": get_artifact,
    "create_artifact": create_artifact,
    "create_version": create_version,
    "search": search,
    "upload": upload,
}
