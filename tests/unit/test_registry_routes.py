"""The route table and the front doors agree: every row names an operation its door has, and
every door operation is reachable."""

from __future__ import annotations

import pytest

from atlas_ci.registry import routes
from atlas_ci.registry.http import HTTPError
from atlas_ci.registry.server import DOORS


def _endpoints() -> list[routes.Endpoint]:
    return [endpoint for _, methods in routes.ROUTES for endpoint in methods.values()]


def test_every_routed_operation_is_in_its_door() -> None:
    missing = [f"{e.door}.{e.name}" for e in _endpoints() if e.name not in DOORS.get(e.door, {})]
    assert not missing, f"routes whose door has no such operation: {missing}"


def test_every_door_operation_is_routed() -> None:
    routed = {(e.door, e.name) for e in _endpoints()}
    unrouted = [
        f"{door}.{name}"
        for door, ops in DOORS.items()
        for name in ops
        if (door, name) not in routed
    ]
    assert not unrouted, f"door operations no route reaches: {unrouted}"
    assert set(DOORS) == {"atlas", "files", "pages", "vagrant_cloud"}


def test_each_endpoint_says_what_access_it_needs() -> None:
    access = {(e.door, e.name): e.access for e in _endpoints()}
    assert {name: a for (door, name), a in access.items() if door != "vagrant_cloud"} == {
        "authenticate": "token",
        "create_artifact": "write",
        "write_access": "write",  # the write-check extension: the gate's answer is the answer
        "get_artifact": "read",
        "create_version": "write",
        "search": "read",
        "latest_file": "read",
        "version_file": "read",
        "upload": "upload_url",
        "box_catalog": "read",
        # The pages ask the services, with the viewer's identity, for each thing they show.
        "home": "public",
        "namespace": "public",
        "box": "public",
        "artifact": "public",
        "stylesheet": "public",
        "icon": "public",
        "sign_in_form": "public",
        "sign_in": "public",
        "sign_out": "public",
    }
    # Vagrant Cloud: a path naming a box is decided before the door; the rest by the box
    # service (a listing, a search, the box PUT whose upload URL it checks, the no-password
    # login that answers 400 to anyone).
    public = {
        name for (door, name), a in access.items() if door == "vagrant_cloud" and a == "public"
    }
    assert public == {"login", "user", "search", "receive_box"}
    reads = {name for (door, name), a in access.items() if door == "vagrant_cloud" and a == "read"}
    assert reads == {"get_box", "get_version", "get_provider", "download"}


@pytest.mark.parametrize(
    ("method", "segments", "status"),
    [
        ("GET", ["a", "b", "c", "d"], 404),
        ("GET", ["api", "v1", "nope"], 404),  # never a web page under /api
        ("GET", ["binstore"], 404),
        ("GET", ["acme"], 404),
        ("DELETE", ["acme", "web"], 405),
        ("GET", ["api", "v1", "artifacts", "%ff", "x"], 400),
        ("GET", ["acme", "%00"], 400),
    ],
)
def test_unroutable_requests_are_http_errors(method: str, segments: list[str], status: int) -> None:
    with pytest.raises(HTTPError) as caught:
        routes.resolve(method, segments, "")
    assert caught.value.status == status


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html, application/json", False),  # a tie keeps the API
        ("text/html;q=0", False),
        ("text/html;q=nonsense", False),
        ("*/*", False),  # curl, Vagrant: no preference for a page
        ("", False),
        (None, False),
    ],
)
def test_a_page_only_for_an_accept_that_prefers_html(accept: str | None, html: bool) -> None:
    assert routes.wants_html(accept) is html


def test_the_box_path_negotiates_between_the_catalog_and_the_page() -> None:
    assert routes.resolve("GET", ["acme", "web"], "").name == "box_catalog"
    assert routes.resolve("HEAD", ["acme", "web"], "").name == "box_catalog"
    assert routes.resolve("GET", ["acme", "web"], "", html=True).name == "box"
    assert routes.resolve("HEAD", ["acme", "web"], "", html=True).name == "box"
    assert routes.resolve("GET", [], "", html=True).name == "home"
    assert routes.resolve("GET", ["acme"], "", html=True).name == "namespace"
    assert routes.resolve("HEAD", ["acme", "w", "amazon.ami"], "", html=True).name == "artifact"
    assert routes.resolve("POST", ["-", "sign-in"], "").name == "sign_in"
    assert routes.resolve("GET", ["-", "sign-in"], "").name == "sign_in_form"
    # A path with only a page is, to an API client, the 404 it always was.
    for method, segments in [
        ("GET", []),
        ("GET", ["acme"]),
        ("POST", []),
        ("PUT", ["a", "b", "c"]),
    ]:
        with pytest.raises(HTTPError) as missing:
            routes.resolve(method, segments, "", html=method == "PUT")
        assert missing.value.status == 404
    with pytest.raises(HTTPError) as caught:
        routes.resolve("POST", ["acme", "web"], "", html=True)
    assert caught.value.headers["Allow"] == "GET, HEAD"
