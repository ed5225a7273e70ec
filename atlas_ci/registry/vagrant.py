"""Vagrant's box catalog ("metadata") for an artifact's ``vagrant.box`` versions.

``GET /{user}/{name}`` is where Vagrant looks when told ``vagrant box add user/name`` with
``VAGRANT_SERVER_URL`` pointing at the registry. The catalog lists every ready version that
has a file and a ``provider`` metadata entry::

    {"name": "acme/web", "versions": [
        {"version": "4", "providers": [{"name": "virtualbox", "url": "<absolute URL>",
                                        "checksum_type": "sha256", "checksum": "<hex>"}]}]}

The box version is the registry's version number: unique, growing with every upload, so
Vagrant's "newest" is the registry's newest. Several builds of one run (a virtualbox and a
libvirt box, say) are several registry versions, one provider each; Vagrant installs the
newest version that has the provider it was asked for (``--provider``), so each provider
still gets its newest box.

The catalog lists the newest :data:`CATALOG_LIMIT` versions, so it stays small and quick
however many versions an artifact has (100,000 versions would be 23 MB of JSON and seconds
of work on every ``vagrant box outdated``). Vagrant only needs the versions it may install:
the newest for ``box add`` and ``box outdated``, the pinned one for ``--box-version``. A box
older than that is still downloadable by its file URL. A pure function: rows in, JSON out.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable

BOX_TYPE = "vagrant.box"
CATALOG_LIMIT = 1000
"""How many of the newest versions the catalog lists."""
MAX_PROVIDER = 255
"""The longest provider name listed (Vagrant's are words like ``virtualbox``): a metadata value
may be up to a JSON body long, and 1,000 of those would make a catalog of a gigabyte."""


def file_url(base: str, user: str, name: str, version: int) -> str:
    """The absolute download URL of one version's box (the registry's own file endpoint)."""
    path = "/".join(urllib.parse.quote(part, safe="") for part in (user, name, BOX_TYPE))
    return f"{base}/api/v1/artifacts/{path}/{version}/file"


def catalog_json(
    user: str, name: str, rows: Iterable[tuple[int, str, str]], base: str
) -> dict[str, object]:
    """The catalog of ``user/name`` from ``(version, sha256, metadata JSON)`` rows given
    newest first; rows whose metadata has no ``provider`` string of 1 to :data:`MAX_PROVIDER`
    characters are left out."""
    prefix = file_url(base, user, name, 0)[: -len("0/file")]
    versions: list[dict[str, object]] = []
    for number, sha256, metadata in rows:
        provider = json.loads(metadata).get("provider")
        if not isinstance(provider, str) or not 0 < len(provider) <= MAX_PROVIDER:
            continue
        versions.append(
            {
                "version": str(number),
                "providers": [
                    {
                        "name": provider,
                        "url": f"{prefix}{number}/file",
                        "checksum_type": "sha256",
                        "checksum": sha256,
                    }
                ],
            }
        )
    return {"name": f"{user}/{name}", "versions": versions}
