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
    assert set(DOORS) == {"atlas", "files"}


def test_each_endpoint_says_what_access_it_needs() -> None:
    access = {e.name: e.access for e in _endpoints()}
    assert access == {
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
    }


@pytest.mark.parametrize(
    ("method", "segments", "status"),
    [
        ("GET", ["nope"], 404),
        ("DELETE", ["acme", "web"], 405),
        ("GET", ["api", "v1", "artifacts", "%ff", "x"], 400),
        ("GET", ["acme", "%00"], 400),
    ],
)
def test_unroutable_requests_are_http_errors(method: str, segments: list[str], status: int) -> None:
    with pytest.raises(HTTPError) as caught:
        routes.resolve(method, segments, "")
    assert caught.value.status == status
