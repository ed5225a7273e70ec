"""A second look at the box model and the Vagrant Cloud API: each test a defect found by
probing a real ``atlas-ci serve`` (SQLite and PostgreSQL), failing before its fix."""

from __future__ import annotations

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
