"""The catalog and files front door: what ``vagrant box add`` and a download read.

``GET /{user}/{name}`` is Vagrant's box catalog (:mod:`.vagrant`); the two file endpoints answer
a version's file, opened here and sent by the protocol layer
(:meth:`~.http.HTTPHandler.send_file`). Access was decided before it runs (:mod:`.gate`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from atlas_ci.registry import vagrant
from atlas_ci.registry.http import Answer, FileAnswer, HTTPError, JsonAnswer
from atlas_ci.registry.model import Version
from atlas_ci.registry.request import Door, Request, existing_artifact
from atlas_ci.registry.routes import Route

log = logging.getLogger("atlas_ci.registry")

_DIGITS = re.compile(r"[0-9]+")


def latest_file(request: Request, route: Route) -> Answer:
    existing_artifact(request, route)
    user, name, type_ = route.params["user"], route.params["name"], route.params["type"]
    version = request.storage.latest_with_file(user, name, type_)
    if version is None:
        raise HTTPError(404, f"{user}/{name}/{type_} has no version with an uploaded file")
    return _file(request.storage.blob_path(version), version)


def version_file(request: Request, route: Route) -> Answer:
    existing_artifact(request, route)
    user, name, type_ = route.params["user"], route.params["name"], route.params["type"]
    raw = route.params["version"]
    version = (
        request.storage.get_version(user, name, type_, int(raw))
        if _DIGITS.fullmatch(raw) and len(raw) < 19
        else None
    )
    if version is None or not version.file or version.state != "ready":
        raise HTTPError(404, f"{user}/{name}/{type_}/{raw} has no uploaded file")
    return _file(request.storage.blob_path(version), version)


def box_catalog(request: Request, route: Route) -> Answer:
    existing_artifact(request, route)
    user, name = route.params["user"], route.params["name"]
    rows = request.storage.ready_files(user, name, vagrant.BOX_TYPE, vagrant.CATALOG_LIMIT)
    return JsonAnswer(200, vagrant.catalog_json(user, name, rows, request.public_base()))


def _file(path: Path, version: Version) -> FileAnswer:
    """The file of ``version``, open; a missing or damaged one is a 500, logged."""
    try:
        blob = path.open("rb", buffering=0)
    except FileNotFoundError:
        log.error("the file of %s is missing from %s", version.slug, path)
        raise HTTPError(500, f"the file of {version.slug} is missing from storage") from None
    try:
        size = blob.seek(0, 2)
        blob.seek(0)
        if version.size is not None and size != version.size:
            log.error(
                "the file of %s is %d bytes, not %d: damaged", version.slug, size, version.size
            )
            raise HTTPError(500, f"the file of {version.slug} is damaged in storage (wrong size)")
    except BaseException:
        blob.close()
        raise
    return FileAnswer(blob, size, version.sha256)


DOOR: Door = {
    "latest_file": latest_file,
    "version_file": version_file,
    "box_catalog": box_catalog,
}
