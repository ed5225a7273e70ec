"""The Vagrant Cloud API's objects as the registry answers them: box records in, JSON out.

Pure functions over :mod:`.box_model` records; the keys are exactly those
``shared/docs/vagrant-cloud-wire.md`` section 2 lists, and no others: Vagrant refuses a search
result with any other key ("Unknown parameters provided"), and a box in a user listing carries
no ``versions`` (Vagrant would append them to the box's own list and show each one twice).
Vagrant counts an object as existing only when it has a truthy ``created_at``: every record
has one.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence

from atlas_ci.registry import vagrant
from atlas_ci.registry.box_model import Box, BoxProvider, BoxVersion


def _quoted(*parts: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)


def _html(text: str) -> str:
    """The description as HTML: escaped paragraphs (the registry renders no Markdown)."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def provider_path(user: str, name: str, version: str, provider: str) -> str:
    """``/api/v1/box/{u}/{n}/version/{v}/provider/{p}``, each part escaped."""
    return (
        f"/api/v1/box/{_quoted(user, name)}/version/{_quoted(version)}/provider/{_quoted(provider)}"
    )


def provider_json(base: str, version: BoxVersion, provider: BoxProvider) -> dict[str, object]:
    """The provider object of ``version``; ``checksum`` is the hosted file's sha256 once it is
    there, else what the publisher declared; ``download_url`` is the catalog's URL for it."""
    if provider.hosted and provider.sha256:
        checksum: str | None = provider.sha256
        checksum_type: str | None = "sha256"
    else:
        checksum, checksum_type = provider.checksum, provider.checksum_type
    return {
        "name": provider.name,
        "hosted": provider.hosted,
        "url": provider.url or None,
        "original_url": provider.url or None,
        "checksum": checksum,
        "checksum_type": checksum_type,
        "created_at": provider.created,
        "updated_at": provider.updated,
        "download_url": vagrant.download_url(base, version, provider),
    }


def version_json(base: str, version: BoxVersion) -> dict[str, object]:
    """The version object, its providers by name."""
    return {
        "version": version.version,
        "number": version.version,
        "status": version.status,
        "created_at": version.created,
        "updated_at": version.updated,
        "description": version.description,
        "description_html": _html(version.description),
        "description_markdown": version.description,
        "providers": [provider_json(base, version, p) for p in version.providers],
    }


def _box_fields(base: str, box: Box, current: BoxVersion | None) -> dict[str, object]:
    return {
        "tag": box.tag,
        "username": box.user,
        "name": box.name,
        "private": box.private,
        "downloads": box.downloads,
        "created_at": box.created,
        "updated_at": box.updated,
        "short_description": box.short_description,
        "description": box.description,
        "description_html": _html(box.description),
        "description_markdown": box.description,
        "current_version": None if current is None else version_json(base, current),
    }


def box_json(
    base: str, box: Box, versions: Sequence[BoxVersion], current: BoxVersion | None
) -> dict[str, object]:
    """The box object of ``GET /box/{u}/{n}`` and search results: ``versions`` newest first,
    ``current_version`` the newest active one."""
    return {
        **_box_fields(base, box, current),
        "versions": [version_json(base, v) for v in versions],
    }


def listed_box_json(base: str, box: Box, current: BoxVersion | None) -> dict[str, object]:
    """A box in a user or organization listing: every key but ``versions``."""
    return _box_fields(base, box, current)


def user_json(
    base: str, owner: str, boxes: Sequence[tuple[Box, BoxVersion | None]]
) -> dict[str, object]:
    """``GET /user/{name}``: the user or organization and the boxes the asker may read."""
    return {
        "username": owner,
        "boxes": [listed_box_json(base, box, current) for box, current in boxes],
    }


def errors_json(*errors: str) -> dict[str, object]:
    """The error body both clients print (``errors`` joined)."""
    return {"errors": list(errors), "success": False}
