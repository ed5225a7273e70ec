"""The box catalog representation: rows in, Vagrant's metadata JSON out."""

from __future__ import annotations

import json

from atlas_ci.registry.vagrant import MAX_PROVIDER, catalog_json, file_url


def test_catalog_keeps_the_order_and_skips_rows_without_a_provider() -> None:
    rows = [
        (1, "a" * 64, json.dumps({"provider": "virtualbox"})),
        (2, "b" * 64, json.dumps({"provider": ""})),
        (3, "c" * 64, json.dumps({"provider": 5})),
        (4, "d" * 64, json.dumps({})),
        (5, "e" * 64, json.dumps({"provider": "libvirt", "other": "x"})),
    ]
    catalog = catalog_json("acme", "web", reversed(rows), "http://h:1")
    assert catalog["name"] == "acme/web"
    assert catalog["versions"] == [
        {
            "version": str(n),
            "providers": [
                {
                    "name": p,
                    "url": f"http://h:1/api/v1/artifacts/acme/web/vagrant.box/{n}/file",
                    "checksum_type": "sha256",
                    "checksum": c * 64,
                }
            ],
        }
        for n, p, c in ((5, "libvirt", "e"), (1, "virtualbox", "a"))
    ]


def test_catalog_leaves_out_a_provider_name_too_long_to_be_one() -> None:
    # Metadata values are as long as a JSON body allows; 1,000 of them must not make the answer.
    rows = [
        (2, "b" * 64, json.dumps({"provider": "p" * (MAX_PROVIDER + 1)})),
        (1, "a" * 64, json.dumps({"provider": "p" * MAX_PROVIDER})),
    ]
    catalog = catalog_json("acme", "web", rows, "http://h:1")
    versions = catalog["versions"]
    assert isinstance(versions, list)
    assert [v["version"] for v in versions] == ["1"]


def test_download_urls_escape_names() -> None:
    assert file_url("https://r/x", "my org", "w?b#", 7) == (
        "https://r/x/api/v1/artifacts/my%20org/w%3Fb%23/vagrant.box/7/file"
    )
