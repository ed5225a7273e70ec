"""The Vagrant Cloud API's shapes: request bodies as the two real clients send them, and the
objects exactly as ``vagrant-cloud-wire.md`` section 2 lists their keys."""

from __future__ import annotations

import pytest

from atlas_ci.registry import vagrant_cloud_json as rep
from atlas_ci.registry import vagrant_cloud_requests as parse
from atlas_ci.registry.box_model import Box, BoxProvider, BoxVersion
from atlas_ci.registry.wire import BadRequest

BASE = "http://127.0.0.1:8080"
BOX_KEYS = {
    "tag", "username", "name", "private", "downloads", "created_at", "updated_at",
    "short_description", "description", "description_html", "description_markdown",
    "current_version", "versions",
}  # fmt: skip
VERSION_KEYS = {
    "version", "number", "status", "created_at", "updated_at", "description",
    "description_html", "description_markdown", "providers",
}  # fmt: skip
PROVIDER_KEYS = {
    "name", "hosted", "url", "original_url", "checksum", "checksum_type", "created_at",
    "updated_at", "download_url",
}  # fmt: skip


def _box(private: bool = False) -> Box:
    return Box("acme", "web", private, "the web", "A <b>box</b>.\n\nTwo.", 3, "t0", "t1")


def _provider(name: str = "virtualbox", **changes: object) -> BoxProvider:
    fields: dict[str, object] = {
        "pk": 1,
        "name": name,
        "url": None,
        "checksum": None,
        "checksum_type": None,
        "file_state": "ready",
        "size": 5,
        "sha256": "ab" * 32,
        "atlas_version": None,
        "created": "t2",
        "updated": "t3",
    }
    fields.update(changes)
    return BoxProvider(**fields)  # type: ignore[arg-type]


def _version(number: str = "1.2.0", status: str = "active", *providers: BoxProvider) -> BoxVersion:
    return BoxVersion(1, "acme", "web", number, status, "notes", "t4", "t5", providers)  # type: ignore[arg-type]


def test_a_box_carries_exactly_the_listed_keys_with_versions_newest_first() -> None:
    released = _version("1.2.0", "active", _provider())
    pending = _version("1.3.0", "unreleased")
    box = rep.box_json(BASE, _box(), [pending, released], released)
    assert set(box) == BOX_KEYS
    assert [v["version"] for v in box["versions"]] == ["1.3.0", "1.2.0"]  # type: ignore[attr-defined]
    current = box["current_version"]
    assert isinstance(current, dict) and set(current) == VERSION_KEYS
    assert current["version"] == current["number"] == "1.2.0"
    assert current["status"] == "active"
    (provider,) = current["providers"]
    assert set(provider) == PROVIDER_KEYS
    assert provider["download_url"] == (
        BASE + "/api/v1/box/acme/web/version/1.2.0/provider/virtualbox/download"
    )
    assert (provider["checksum"], provider["checksum_type"], provider["hosted"]) == (
        "ab" * 32,
        "sha256",
        True,
    )
    assert box["description_html"] == "<p>A &lt;b&gt;box&lt;/b&gt;.</p><p>Two.</p>"
    assert box["created_at"] and box["tag"] == "acme/web"


def test_a_user_listing_carries_no_versions() -> None:
    listing = rep.user_json(BASE, "acme", [(_box(), None)])
    assert listing["username"] == "acme"
    (box,) = listing["boxes"]  # type: ignore[misc]
    assert set(box) == BOX_KEYS - {"versions"}
    assert box["current_version"] is None


def test_an_external_provider_points_at_its_url_with_the_declared_checksum() -> None:
    external = _provider(
        "libvirt",
        url="https://boxes.example/web.box",
        checksum="cd" * 32,
        checksum_type="sha256",
        file_state="none",
        sha256=None,
        size=None,
    )
    out = rep.provider_json(BASE, _version("1.0.0", "active", external), external)
    assert out["hosted"] is False
    assert out["download_url"] == out["url"] == "https://boxes.example/web.box"
    assert out["checksum"] == "cd" * 32


def test_path_parts_are_escaped() -> None:
    assert rep.provider_path("acme", "web", "1.0.0+b/1", "vmware desktop") == (
        "/api/v1/box/acme/web/version/1.0.0%2Bb%2F1/provider/vmware%20desktop"
    )


def test_errors_say_success_false() -> None:
    assert rep.errors_json("no") == {"errors": ["no"], "success": False}


def test_box_bodies_are_taken_flat_or_wrapped() -> None:
    flat = parse.parse_box({"username": "acme", "name": "web", "is_private": True})
    assert (flat.username, flat.name, flat.is_private) == ("acme", "web", True)
    wrapped = parse.parse_box(
        {"box": {"username": "acme", "name": "web", "short_description": "s"}}
    )
    assert (wrapped.name, wrapped.short_description, wrapped.is_private) == ("web", "s", None)
    with pytest.raises(BadRequest, match="is_private must be true or false"):
        parse.parse_box({"username": "acme", "name": "web", "is_private": "yes"})
    with pytest.raises(BadRequest, match=r"box\.name must be a string"):
        parse.parse_box({"username": "acme", "name": 3})


def test_version_and_provider_bodies() -> None:
    assert parse.parse_version({"version": {"version": "1.0.0", "description": "d"}}) == (
        parse.VersionFields("1.0.0", "d")
    )
    assert parse.parse_version(None) == parse.VersionFields()  # an empty PUT body
    with pytest.raises(BadRequest, match=r"version\.version must be a string"):
        parse.parse_version({"version": {"version": 1.0}})
    provider = parse.parse_provider({"provider": {"name": "virtualbox", "url": None}})
    assert (provider.name, provider.url) == ("virtualbox", None)


def test_search_queries() -> None:
    query = parse.parse_search("q=web&provider=libvirt&sort=created&order=asc&limit=5&page=2")
    assert (query.q, query.provider, query.sort, query.order, query.limit, query.page) == (
        "web", "libvirt", "created", "asc", 5, 2,
    )  # fmt: skip
    assert parse.parse_search("q=web&access_token=secret").q == "web"
    for bad, message in (
        ("sort=name", "sort must be one of"),
        ("order=up", "order must be desc or asc"),
        ("limit=0", "limit must be a whole number from 1 to 100"),
        ("limit=101", "limit must be"),
        ("page=-1", "page must be"),
    ):
        with pytest.raises(BadRequest, match=message):
            parse.parse_search(bad)
