"""The box catalog representation: box versions in, Vagrant's metadata JSON out."""

from __future__ import annotations

from atlas_ci.registry.box_model import BoxProvider, BoxVersion
from atlas_ci.registry.vagrant import box_file_url, catalog_json, file_url


def _provider(name: str, **fields: object) -> BoxProvider:
    values: dict[str, object] = {
        "pk": 1,
        "name": name,
        "url": None,
        "checksum": None,
        "checksum_type": None,
        "file_state": "ready",
        "size": 3,
        "sha256": "a" * 64,
        "atlas_version": None,
        "created": "t",
        "updated": "t",
    }
    values.update(fields)
    return BoxProvider(**values)  # type: ignore[arg-type]


def _version(version: str, *providers: BoxProvider) -> BoxVersion:
    return BoxVersion(1, "acme", "web", version, "active", "", "t", "t", providers)


def test_catalog_keeps_the_order_and_points_each_provider_at_its_file() -> None:
    versions = [
        _version(
            "1.10.0",
            _provider("libvirt", sha256="b" * 64),
            _provider("virtualbox", atlas_version=7, sha256="c" * 64),
        ),
        _version(
            "1.9.0",
            _provider(
                "vmware_desktop",
                file_state="none",
                sha256=None,
                url="https://mirror.example/w.box",
                checksum="d" * 40,
                checksum_type="sha1",
            ),
            _provider("hyperv", file_state="none", sha256=None, url="https://m/h.box"),
        ),
    ]
    assert catalog_json("acme", "web", versions, "http://h:1") == {
        "name": "acme/web",
        "versions": [
            {
                "version": "1.10.0",
                "providers": [
                    {
                        "name": "libvirt",
                        "url": "http://h:1/api/v1/box/acme/web/version/1.10.0/provider/libvirt/download",
                        "checksum_type": "sha256",
                        "checksum": "b" * 64,
                    },
                    {
                        "name": "virtualbox",
                        "url": "http://h:1/api/v1/artifacts/acme/web/vagrant.box/7/file",
                        "checksum_type": "sha256",
                        "checksum": "c" * 64,
                    },
                ],
            },
            {
                "version": "1.9.0",
                "providers": [
                    {
                        "name": "vmware_desktop",
                        "url": "https://mirror.example/w.box",
                        "checksum_type": "sha1",
                        "checksum": "d" * 40,
                    },
                    {"name": "hyperv", "url": "https://m/h.box"},
                ],
            },
        ],
    }


def test_download_urls_escape_names() -> None:
    assert file_url("https://r/x", "my org", "w?b#", 7) == (
        "https://r/x/api/v1/artifacts/my%20org/w%3Fb%23/vagrant.box/7/file"
    )
    assert box_file_url("https://r", "my org", "w?b", "1.0", "v/b") == (
        "https://r/api/v1/box/my%20org/w%3Fb/version/1.0/provider/v%2Fb/download"
    )
