"""The dry run's write check in the client (atlas-wire §12), against registries that can and
cannot answer it: the extension when announced, the token check's ``read_only`` otherwise."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from atlas_ci.client import AtlasClient, TokenInfo
from atlas_ci.errors import AuthError
from atlas_ci.retry import RetryPolicy
from atlas_ci.settings import Inputs, Settings

BASE = "https://atlas.example"
TOKEN = "s3cr3t-token-value"
AUTH = f"{BASE}/api/v1/authenticate"
WRITE = f"{BASE}/api/v1/namespaces/acme/write-access"
ANNOUNCED = {"X-Atlas-Extensions": "idempotency-key, Write-Check"}


def client() -> AtlasClient:
    settings = Settings.from_inputs(
        Inputs(artifact="acme/web", token=TOKEN, atlas_url=BASE), env={}
    )
    return AtlasClient(settings, policy=RetryPolicy(retries=0, max_wait=0, sleep=lambda _: None))


def user(read_only: bool) -> dict[str, Any]:
    return {"user": {"username": "alice", "read_only": read_only}}


@responses.activate
def test_atlas_without_a_body_tells_nothing_and_nothing_is_refused() -> None:
    responses.get(AUTH, status=204)
    api = client()
    info = api.authenticate()
    assert info == TokenInfo()
    api.check_write("acme", info, "artifact creation")
    assert [c.request.url for c in responses.calls] == [AUTH]


@responses.activate
def test_without_the_extension_a_read_only_token_is_refused_as_the_post_would_be() -> None:
    responses.get(AUTH, json=user(True))
    api = client()
    info = api.authenticate()
    with pytest.raises(AuthError) as err:
        api.check_write("acme", info, "artifact creation")
    assert err.value.exit_code == 4
    assert err.value.one_line().startswith(
        "permission denied (403) during the artifact creation: the token of user alice is read-only"
    )
    assert [c.request.url for c in responses.calls] == [AUTH]  # nothing else asked


@responses.activate
def test_without_the_extension_a_writable_token_passes_unasked() -> None:
    responses.get(AUTH, json=user(False))
    api = client()
    api.check_write("acme", api.authenticate(), "artifact creation")
    assert len(responses.calls) == 1


@responses.activate
def test_the_extension_answers_for_the_namespace() -> None:
    responses.get(AUTH, json=user(False), headers=ANNOUNCED)
    responses.get(
        WRITE,
        status=403,
        json={"errors": ["user alice has no write access to namespace acme"]},
        headers=ANNOUNCED,
    )
    api = client()
    info = api.authenticate()
    assert info.write_check
    with pytest.raises(AuthError) as err:
        api.check_write("acme", info, "version creation")
    assert err.value.exit_code == 4
    assert "during the version creation: user alice has no write access to namespace acme" in (
        err.value.one_line()
    )
    assert TOKEN not in err.value.one_line()
    assert responses.calls[1].request.headers["X-Atlas-Token"] == TOKEN


@responses.activate
def test_an_allowed_write_passes() -> None:
    responses.get(AUTH, json=user(False), headers=ANNOUNCED)
    responses.get(WRITE, json={"namespace": "acme", "write": True}, headers=ANNOUNCED)
    api = client()
    api.check_write("acme", api.authenticate(), "artifact creation")
    assert len(responses.calls) == 2


@responses.activate
def test_an_announced_extension_that_is_not_served_falls_back() -> None:
    responses.get(AUTH, json=user(True), headers=ANNOUNCED)
    responses.get(WRITE, status=404)
    api = client()
    info = api.authenticate()
    with pytest.raises(AuthError, match="the token of user alice is read-only"):
        api.check_write("acme", info, "artifact creation")
