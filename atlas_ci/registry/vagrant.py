"""Vagrant's box catalog ("metadata") of a box: a pure function, box versions in, JSON out.

``GET /{user}/{name}`` is where Vagrant looks when told ``vagrant box add user/name`` with
``VAGRANT_SERVER_URL`` pointing at the registry. The catalog lists the box's **active**
versions newest first, in Vagrant's order (:mod:`.box_version`), each with every provider
Vagrant can install (a hosted file that is there, or an external url)::

    {"name": "acme/web", "versions": [
        {"version": "1.2.0", "providers": [
            {"name": "libvirt", "url": "<absolute URL>", "checksum_type": "sha256",
             "checksum": "<hex>"},
            {"name": "virtualbox", ...}]}]}

Versions come from the box model (:mod:`.boxes`): named by their publisher through the
Vagrant Cloud API or an Atlas upload's ``version`` metadata, or numbered ``"4"`` for an
Atlas upload without one (what this catalog always called them). A provider that came from
an Atlas upload is downloaded from the Atlas file URL, as before; one uploaded through the
Vagrant Cloud API from that API's download URL (:func:`box_file_url`).

The catalog lists the newest :data:`CATALOG_LIMIT` versions, so it stays small and quick
however many versions a box has (100,000 versions would be 23 MB of JSON and seconds of
work on every ``vagrant box outdated``). Vagrant only needs the versions it may install:
the newest for ``box add`` and ``box outdated``, the pinned one for ``--box-version``. An
older box is still downloadable by its file URL.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

from atlas_ci.registry.box_model import BoxProvider, BoxVersion

BOX_TYPE = "vagrant.box"
CATALOG_LIMIT = 1000
"""How many of the newest versions the catalog lists."""


def _quoted(*parts: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)


def file_url(base: str, user: str, name: str, version: int) -> str:
    """The absolute download URL of one Atlas version's box (the Atlas file endpoint)."""
    return f"{base}/api/v1/artifacts/{_quoted(user, name, BOX_TYPE)}/{version}/file"


def box_file_url(base: str, user: str, name: str, version: str, provider: str) -> str:
    """Where the Vagrant Cloud API serves a provider's hosted file:
    ``/api/v1/box/{user}/{name}/version/{version}/provider/{provider}/download``."""
    return (
        f"{base}/api/v1/box/{_quoted(user, name)}/version/{_quoted(version)}"
        f"/provider/{_quoted(provider)}/download"
    )


def download_url(base: str, version: BoxVersion, provider: BoxProvider) -> str | None:
    """Where Vagrant downloads ``provider``: its hosted file, else its external url."""
    if provider.hosted:
        if provider.atlas_version is not None:
            return file_url(base, version.user, version.name, provider.atlas_version)
        return box_file_url(base, version.user, version.name, version.version, provider.name)
    return provider.url


def _provider_json(base: str, version: BoxVersion, provider: BoxProvider) -> dict[str, object]:
    entry: dict[str, object] = {"name": provider.name, "url": download_url(base, version, provider)}
    if provider.hosted and provider.sha256 is not None:
        entry.update(checksum_type="sha256", checksum=provider.sha256)
    elif provider.checksum is not None and provider.checksum_type is not None:
        entry.update(checksum_type=provider.checksum_type, checksum=provider.checksum)
    return entry


def catalog_json(
    user: str, name: str, versions: Iterable[BoxVersion], base: str
) -> dict[str, object]:
    """The catalog of ``user/name`` from its installable versions, given newest first (what
    :meth:`.boxes.Boxes.catalog` returns)."""
    return {
        "name": f"{user}/{name}",
        "versions": [
            {
                "version": version.version,
                "providers": [_provider_json(base, version, p) for p in version.providers],
            }
            for version in versions
        ],
    }
