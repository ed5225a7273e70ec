"""A second look at the box model and the Vagrant Cloud API: each test a defect found by
probing a real ``atlas-ci serve`` (SQLite and PostgreSQL), failing before its fix."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.vagrant_cloud import TIMEOUT, Team, team_registry
from tests.postgres import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def team(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    yield from team_registry(request, tmp_path_factory.mktemp("box-review"))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_nul_in_the_search_words_is_a_clear_400_on_both_backends(team: Team) -> None:
    made = requests.post(
        team.api + "/boxes",
        json={"username": "acme", "name": "nulsearch", "is_private": False},
        headers=_bearer(team.writer),
        timeout=TIMEOUT,
    )
    assert made.status_code == 200, made.text
    for query in ("q=%00", "q=a%00b"):
        found = requests.get(f"{team.api}/search?{query}", timeout=TIMEOUT)
        assert found.status_code == 400, (query, found.status_code, found.text)
        assert "NUL" in " ".join(found.json()["errors"]), found.text
    assert "Traceback" not in team.registry.stderr_text()


def _hosted_box(team: Team, name: str, data: bytes) -> str:
    """Public box ``acme/<name>`` 1.0.0 with provider virtualbox holding ``data``; its
    download URL."""
    path = f"/box/acme/{name}/version/1.0.0"
    for route, body in (
        ("/boxes", {"username": "acme", "name": name, "is_private": False}),
        (f"/box/acme/{name}/versions", {"version": {"version": "1.0.0"}}),
        (f"{path}/providers", {"provider": {"name": "virtualbox"}}),
    ):
        made = requests.post(team.api + route, json=body, headers=_bearer(team.writer), timeout=5)
        assert made.status_code == 200, made.text
    upload = requests.get(
        f"{team.api}{path}/provider/virtualbox/upload", headers=_bearer(team.writer), timeout=5
    )
    assert upload.status_code == 200, upload.text
    put = requests.put(upload.json()["upload_path"], data=data, timeout=TIMEOUT)
    assert put.status_code == 200, put.text
    return f"{team.api}{path}/provider/virtualbox/download"


def _downloads(team: Team, name: str, expected: int) -> int:
    """The box's download count once it reaches ``expected`` (or after 5 s, what it is)."""
    deadline = time.monotonic() + 5
    while True:
        count = int(team.box(f"acme/{name}")["downloads"])
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_a_whole_download_on_a_closing_connection_is_counted(team: Team) -> None:
    # HTTP/1.0 and "Connection: close" clients (nginx proxies upstream in HTTP/1.0 by default)
    # get the whole file: that is a download as much as a kept-alive one.
    data = bytes(range(256)) * 8
    url = _hosted_box(team, "closing", data)
    whole = requests.get(url, headers={"Connection": "close"}, timeout=TIMEOUT)
    assert whole.status_code == 200 and whole.content == data
    assert _downloads(team, "closing", 1) == 1
