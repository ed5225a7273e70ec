"""The Vagrant Cloud API over HTTP, with the quirks of its real clients sent as they send them
(Packer's JSON content type on GETs, empty PUTs and the binary box PUT; Vagrant's
``Expect: 100-continue`` and its path-only callback), and the clear 4xx every bad input gets;
on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.http_raw import read_until_closed, split_answers
from tests.integration.vagrant_cloud import TIMEOUT, Team, team_registry
from tests.postgres import BACKENDS

PACKER_HEADERS = {"Content-Type": "application/json"}  # on every call, GETs included


@pytest.fixture(scope="module", params=BACKENDS)
def team(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    yield from team_registry(request, tmp_path_factory.mktemp("vagrant-cloud-api"))


def call(
    team: Team, method: str, path: str, token: str | None, body: object = None, **kw: Any
) -> requests.Response:
    """``method`` on ``/api/v1<path>`` as Packer sends it (JSON content type, empty body)."""
    headers = dict(PACKER_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(
        method, team.api + path, headers=headers, json=body, timeout=TIMEOUT, **kw
    )


def ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    payload: dict[str, Any] = response.json()
    return payload


def refused(response: requests.Response, status: int, *words: str) -> str:
    """Assert an error answer: ``status``, the Vagrant Cloud error shape, ``words`` in it."""
    assert response.status_code == status, (response.status_code, response.text)
    payload = response.json()
    assert payload["success"] is False, payload
    message = " ".join(payload["errors"])
    for word in words:
        assert word in message, (word, message)
    return message


def _box_with_provider(team: Team, name: str, version: str = "1.0.0") -> str:
    """Box ``acme/<name>`` with ``version`` and provider virtualbox (no file); its path."""
    ok(call(team, "POST", "/boxes", team.writer, {"username": "acme", "name": name}))
    path = f"/box/acme/{name}/version/{version}"
    ok(
        call(
            team,
            "POST",
            f"/box/acme/{name}/versions",
            team.writer,
            {"version": {"version": version}},
        )
    )
    ok(call(team, "POST", f"{path}/providers", team.writer, {"provider": {"name": "virtualbox"}}))
    return path


def test_a_box_lives_and_dies_with_every_success_exactly_200(team: Team) -> None:
    box = ok(
        call(
            team, "POST", "/boxes", team.writer,
            {"username": "acme", "name": "life", "short_description": "s", "is_private": False},
        )
    )  # fmt: skip
    assert (box["tag"], box["private"], box["versions"], box["current_version"]) == (
        "acme/life", False, [], None,
    )  # fmt: skip
    assert box["created_at"]
    path = "/box/acme/life/version/1.10.0"
    version = ok(
        call(
            team, "POST", "/box/acme/life/versions", team.writer, {"version": {"version": "1.10.0"}}
        )
    )
    assert (version["version"], version["status"]) == ("1.10.0", "unreleased")
    provider = ok(
        call(team, "POST", f"{path}/providers", team.writer, {"provider": {"name": "virtualbox"}})
    )
    assert (provider["name"], provider["hosted"]) == ("virtualbox", False)

    # Through the registry, as Packer sends it: Bearer and a JSON content type on binary bytes.
    upload = ok(call(team, "GET", f"{path}/provider/virtualbox/upload", team.writer))
    data = b'{"not": json at all \x00\xff' + bytes(range(256)) * 40
    put = requests.put(
        upload["upload_path"],
        data=data,
        headers={**PACKER_HEADERS, "Authorization": f"Bearer {team.writer}"},
        timeout=TIMEOUT,
    )
    assert put.status_code == 200, put.text
    released = ok(
        requests.put(
            team.api + f"{path}/release",
            headers=PACKER_HEADERS | {"Authorization": f"Bearer {team.writer}"},
            timeout=TIMEOUT,
        )
    )
    assert released["status"] == "active"
    # An older version published after: the box's newest is still 1.10.0 (Vagrant's order).
    _ = ok(
        call(
            team, "POST", "/box/acme/life/versions", team.writer, {"version": {"version": "1.9.0"}}
        )
    )

    got = ok(call(team, "GET", "/box/acme/life", team.reader))
    assert [v["version"] for v in got["versions"]] == ["1.10.0", "1.9.0"]
    current = got["current_version"]
    assert current["version"] == "1.10.0"
    (hosted,) = current["providers"]
    assert hosted["hosted"] is True
    assert hosted["checksum"] == hashlib.sha256(data).hexdigest()
    assert hosted["checksum_type"] == "sha256"
    download = requests.get(
        hosted["download_url"], headers={"Authorization": f"Bearer {team.reader}"}, timeout=TIMEOUT
    )
    assert download.status_code == 200 and download.content == data
    # Counted once the server saw the whole file out, which may be just after the client has it.
    deadline = time.monotonic() + 5
    while (downloads := ok(call(team, "GET", "/box/acme/life", team.reader))["downloads"]) == 0:
        assert time.monotonic() < deadline, "the download was never counted"
        time.sleep(0.05)
    assert downloads == 1
    catalog = team.catalog("acme/life")
    assert [v["version"] for v in catalog["versions"]] == ["1.10.0"]

    ok(call(team, "PUT", "/box/acme/life", team.writer, {"short_description": "changed"}))
    assert team.box("acme/life")["short_description"] == "changed"
    ok(call(team, "PUT", f"{path}/revoke", team.writer))
    assert ok(call(team, "GET", path, team.writer))["status"] == "revoked"
    ok(call(team, "DELETE", f"{path}/provider/virtualbox", team.writer))
    ok(call(team, "DELETE", path, team.writer))
    assert call(team, "GET", path, team.writer).status_code == 404
    ok(call(team, "DELETE", "/box/acme/life", team.writer))
    refused(call(team, "GET", "/box/acme/life", team.writer), 404)


def test_bad_input_gets_a_clear_4xx(team: Team) -> None:
    refused(call(team, "POST", "/boxes", team.writer, {"username": "acme", "name": "a b"}), 422)
    refused(
        call(
            team, "POST", "/boxes", team.registry.token, {"username": "no such org!", "name": "x"}
        ),
        422,
    )
    refused(call(team, "POST", "/boxes", team.writer, {"username": "acme"}), 422, "name")
    path = _box_with_provider(team, "bad")
    refused(
        call(
            team, "POST", "/box/acme/bad/versions", team.writer, {"version": {"version": "one.two"}}
        ),
        422,
        "one.two",
    )
    refused(
        call(
            team, "POST", "/box/acme/bad/versions", team.writer, {"version": {"version": "1.0.0"}}
        ),
        422,
    )
    refused(
        call(team, "POST", f"{path}/providers", team.writer, {"provider": {"name": "virtualbox"}}),
        422,
        "virtualbox",
    )
    refused(call(team, "PUT", f"{path}/release", team.writer), 422)  # no provider has a file
    empty = {"version": {"version": "2.0.0"}}
    ok(call(team, "POST", "/box/acme/bad/versions", team.writer, empty))
    refused(call(team, "PUT", "/box/acme/bad/version/2.0.0/release", team.writer), 422)  # none
    assert ok(call(team, "GET", "/box/acme/bad/version/2.0.0", team.writer))["status"] == (
        "unreleased"
    )
    refused(
        call(team, "POST", "/authenticate", None, {"user": {"login": "a", "password": "b"}}),
        400,
        "atlas-ci registry token create --user NAME",
    )


def test_a_box_put_cut_short_leaves_the_provider_without_a_file(team: Team) -> None:
    path = _box_with_provider(team, "short")
    upload_path = ok(call(team, "GET", f"{path}/provider/virtualbox/upload", team.writer))[
        "upload_path"
    ]
    target = urllib.parse.urlsplit(upload_path).path
    with socket.create_connection(("127.0.0.1", team.registry.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 10
        )
        sock.shutdown(socket.SHUT_WR)
        answers, _ = split_answers(read_until_closed(sock))
    assert answers[0].status == 400, answers
    assert b"upload incomplete" in answers[0].body
    assert ok(call(team, "GET", f"{path}/provider/virtualbox", team.writer))["hosted"] is False
    refused(call(team, "PUT", f"{path}/release", team.writer), 422)


def test_direct_upload_with_expect_continue_and_a_path_only_callback(team: Team) -> None:
    path = _box_with_provider(team, "direct")
    ok(call(team, "POST", f"{path}/providers", team.writer, {"provider": {"name": "libvirt"}}))
    direct = ok(call(team, "GET", f"{path}/provider/virtualbox/upload/direct", team.writer))
    target = urllib.parse.urlsplit(direct["upload_path"]).path
    data = b"a box" * 100
    with socket.create_connection(("127.0.0.1", team.registry.port), timeout=TIMEOUT) as sock:
        # curl as Vagrant runs it: waits for 100 Continue before the body.
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nContent-Length: {len(data)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode()
        )
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        assert sock.recv(len(interim)) == interim
        sock.sendall(data)
        answers, _ = split_answers(read_until_closed(sock))
    assert answers[0].status == 200, answers
    # Vagrant sends the callback's path alone to its API root: no host, no query.
    callback = urllib.parse.urlsplit(direct["callback"]).path
    assert callback.startswith("/api/v1/box/acme/direct/version/1.0.0/provider/virtualbox/")
    other = callback.replace("/provider/virtualbox/", "/provider/libvirt/")
    refused(
        requests.put(
            team.registry.url + other,
            headers={"Authorization": f"Bearer {team.writer}", "Content-Type": "application/json"},
            timeout=TIMEOUT,
        ),
        409,
    )
    done = requests.put(
        team.registry.url + callback,
        headers={"Authorization": f"Bearer {team.writer}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert ok(done)["hosted"] is True
    refused(
        requests.put(
            team.registry.url + callback,
            headers={"Authorization": f"Bearer {team.writer}", "Content-Type": "application/json"},
            timeout=TIMEOUT,
        ),
        409,
    )
    assert ok(call(team, "GET", f"{path}/provider/virtualbox", team.reader))["checksum"] == (
        hashlib.sha256(data).hexdigest()
    )
    log = team.registry.stderr_text()
    assert target.rsplit("/", 1)[1] not in log
    assert callback.rsplit("/", 1)[1] not in log


def test_access_is_the_policy_s(team: Team) -> None:
    ok(
        call(
            team,
            "POST",
            "/boxes",
            team.writer,
            {"username": "acme", "name": "hidden", "is_private": True},
        )
    )
    refused(call(team, "GET", "/box/acme/hidden", None), 401)
    refused(call(team, "GET", "/box/acme/hidden", team.outsider), 404)
    assert ok(call(team, "GET", "/box/acme/hidden", team.reader))["private"] is True
    for token in (team.reader, team.outsider):
        refused(
            call(
                team, "POST", "/box/acme/hidden/versions", token, {"version": {"version": "1.0.0"}}
            ),
            403,
        )
        refused(call(team, "POST", "/boxes", token, {"username": "acme", "name": "theirs"}), 403)
        refused(call(team, "PUT", "/box/acme/hidden", token, {"is_private": False}), 403)
        refused(call(team, "DELETE", "/box/acme/hidden", token), 403)
    refused(call(team, "POST", "/boxes", None, {"username": "acme", "name": "anon"}), 401)
    assert team.box("acme/hidden")["versions"] == []
    assert call(team, "GET", "/box/acme/theirs", team.registry.token).status_code == 404
    # Search and listings never show it to an outsider; a token in the query is never logged.
    leaked = "not-a-real-token-but-a-secret-shape"
    for token, seen in ((team.outsider, False), (None, False), (team.reader, True)):
        found = ok(call(team, "GET", f"/search?q=hidden&access_token={leaked}", token))
        assert ("acme/hidden" in [b["tag"] for b in found["boxes"]]) is seen
        listing = ok(call(team, "GET", "/user/acme", token))
        assert ("acme/hidden" in [b["tag"] for b in listing["boxes"]]) is seen
        assert all("versions" not in b for b in listing["boxes"])
    assert leaked not in team.registry.stderr_text()
